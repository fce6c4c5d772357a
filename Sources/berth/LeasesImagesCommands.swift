import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

typealias LeasesAPI = Containerd_Services_Leases_V1_Leases
typealias ImagesAPI = Containerd_Services_Images_V1_Images

struct Leases: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leases", abstract: "Manage leases.", subcommands: [List.self, Create.self, Remove.self],
        aliases: ["lease"])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List leases.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only ids.") var quiet = false
        @Argument(help: "Filters.") var filters: [String] = []

        func run() async throws {
            var request = Containerd_Services_Leases_V1_ListRequest()
            request.filters = filters
            let list = request
            let leases = try await global.connect { c in
                try await LeasesAPI.Client(wrapping: c.client).list(list, metadata: c.metadata).leases
            }
            if quiet { return leases.forEach { print($0.id) } }
            switch global.format {
            case .json: Output.json(leases.map { ["id": $0.id, "labels": $0.labels] as [String: Any] })
            case .table:
                Output.table(["ID", "CREATED AT", "LABELS"], leases.map {
                    [$0.id, $0.createdAt.date.formatted(.iso8601), Output.labelText($0.labels)]
                })
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a lease; prints its id.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Lease id (generated when absent).") var id: String = ""
        @Option(help: "Expire after this Go duration (sets containerd.io/gc.expire).") var expiration: String?
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String] = []

        func run() async throws {
            var request = Containerd_Services_Leases_V1_CreateRequest()
            request.id = id
            request.labels = Output.labels(labels)
            if let expiration {
                guard let seconds = GoDuration.seconds(expiration) else { throw ValidationError("bad duration \(expiration)") }
                request.labels[GCLabels.expire] = Date().addingTimeInterval(seconds).formatted(.iso8601)
            }
            let create = request
            let lease = try await global.connect { c in
                try await LeasesAPI.Client(wrapping: c.client).create(create, metadata: c.metadata).lease
            }
            print(lease.id)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove leases.", aliases: ["remove"])
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Wait for garbage collection.") var sync = false
        @Argument(help: "Lease ids.") var ids: [String]

        func run() async throws {
            let (ids, sync) = (self.ids, self.sync)
            try await global.connect { c in
                for id in ids {
                    var request = Containerd_Services_Leases_V1_DeleteRequest()
                    request.id = id
                    request.sync = sync
                    _ = try await LeasesAPI.Client(wrapping: c.client).delete(request, metadata: c.metadata)
                    print(id)
                }
            }
        }
    }
}

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images", abstract: "Manage image records.",
        subcommands: [List.self, Remove.self, Label.self, Inspect.self, Tag.self],
        aliases: ["image", "i"])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List images.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only names.") var quiet = false
        @Argument(help: "Filters.") var filters: [String] = []

        func run() async throws {
            var request = Containerd_Services_Images_V1_ListImagesRequest()
            request.filters = filters
            let list = request
            let images = try await global.connect { c in
                try await ImagesAPI.Client(wrapping: c.client).list(list, metadata: c.metadata).images
            }
            if quiet { return images.forEach { print($0.name) } }
            switch global.format {
            case .json:
                Output.json(images.map {
                    ["name": $0.name, "digest": $0.target.digest, "mediaType": $0.target.mediaType,
                     "size": $0.target.size, "labels": $0.labels] as [String: Any]
                })
            case .table:
                Output.table(["REF", "TYPE", "DIGEST", "SIZE", "LABELS"], images.map {
                    [$0.name, $0.target.mediaType, $0.target.digest, Output.bytes($0.target.size), Output.labelText($0.labels)]
                })
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove images.", aliases: ["remove"])
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Wait for garbage collection.") var sync = false
        @Argument(help: "Image names.") var names: [String]

        func run() async throws {
            let (names, sync) = (self.names, self.sync)
            try await global.connect { c in
                for name in names {
                    var request = Containerd_Services_Images_V1_DeleteImageRequest()
                    request.name = name
                    request.sync = sync
                    _ = try await ImagesAPI.Client(wrapping: c.client).delete(request, metadata: c.metadata)
                    print(name)
                }
            }
        }
    }

    struct Label: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set labels on an image (KEY= removes KEY).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Image name.") var name: String
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String]

        func run() async throws {
            let (name, labels) = (self.name, Output.labels(self.labels))
            let image = try await global.connect { c in
                let api = ImagesAPI.Client(wrapping: c.client)
                var get = Containerd_Services_Images_V1_GetImageRequest()
                get.name = name
                var request = Containerd_Services_Images_V1_UpdateImageRequest()
                request.image = try await api.get(get, metadata: c.metadata).image
                for (key, value) in labels { request.image.labels[key] = value.isEmpty ? nil : value }
                request.updateMask.paths = labels.keys.sorted().map { "labels.\($0)" }
                return try await api.update(request, metadata: c.metadata).image
            }
            print(Output.labelText(image.labels))
        }
    }
}
