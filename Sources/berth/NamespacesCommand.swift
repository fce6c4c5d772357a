import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import SwiftProtobuf

typealias NamespacesAPI = Containerd_Services_Namespaces_V1_Namespaces

struct Namespaces: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "namespaces", abstract: "Manage namespaces.",
        subcommands: [Create.self, List.self, Label.self, Remove.self], aliases: ["namespace", "ns"])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a namespace, with optional labels.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Namespace name.") var name: String
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String] = []

        func run() async throws {
            var request = Containerd_Services_Namespaces_V1_CreateNamespaceRequest()
            request.namespace.name = name
            request.namespace.labels = Output.labels(labels)
            let create = request
            _ = try await global.connect { c in
                try await NamespacesAPI.Client(wrapping: c.client).create(create, metadata: c.metadata)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List namespaces.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only names.") var quiet = false

        func run() async throws {
            let namespaces = try await global.connect { c in
                try await NamespacesAPI.Client(wrapping: c.client)
                    .list(Containerd_Services_Namespaces_V1_ListNamespacesRequest(), metadata: c.metadata).namespaces
            }
            if quiet {
                namespaces.forEach { print($0.name) }
                return
            }
            switch global.format {
            case .json: Output.json(namespaces.map { ["name": $0.name, "labels": $0.labels] as [String: Any] })
            case .table: Output.table(["NAME", "LABELS"], namespaces.map { [$0.name, Output.labelText($0.labels)] })
            }
        }
    }

    struct Label: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set labels on a namespace (KEY= removes KEY); with none, print its labels.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Namespace name.") var name: String
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String] = []

        func run() async throws {
            let name = self.name
            let labels = Output.labels(self.labels)
            let result = try await global.connect { c in
                let api = NamespacesAPI.Client(wrapping: c.client)
                if labels.isEmpty {
                    var request = Containerd_Services_Namespaces_V1_GetNamespaceRequest()
                    request.name = name
                    return try await api.get(request, metadata: c.metadata).namespace.labels
                }
                var request = Containerd_Services_Namespaces_V1_UpdateNamespaceRequest()
                request.namespace.name = name
                request.namespace.labels = labels.filter { !$0.value.isEmpty }
                request.updateMask.paths = labels.keys.sorted().map { "labels.\($0)" }
                return try await api.update(request, metadata: c.metadata).namespace.labels
            }
            if labels.isEmpty {
                switch global.format {
                case .json: Output.json(result)
                case .table: result.sorted { $0.key < $1.key }.forEach { print("\($0.key)=\($0.value)") }
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove empty namespaces.", aliases: ["remove"])
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Namespace names.") var names: [String]

        func run() async throws {
            let names = self.names
            try await global.connect { c in
                for name in names {
                    var request = Containerd_Services_Namespaces_V1_DeleteNamespaceRequest()
                    request.name = name
                    _ = try await NamespacesAPI.Client(wrapping: c.client).delete(request, metadata: c.metadata)
                    print(name)
                }
            }
        }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print events as they happen (containerd filter syntax).", aliases: ["event"])
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Filters, e.g. topic==/namespaces/create or namespace==default.") var filters: [String] = []

    func run() async throws {
        var request = Containerd_Services_Events_V1_SubscribeRequest()
        request.filters = filters
        let subscribe = request
        let format = global.format
        try await global.connect { c in
            try await Containerd_Services_Events_V1_Events.Client(wrapping: c.client)
                .subscribe(subscribe, metadata: c.metadata) { response in
                    for try await envelope in response.messages {
                        let json = EventCoding.json(typeURL: envelope.event.typeURL, payload: envelope.event.value) ?? "{}"
                        let time = envelope.timestamp.date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
                        switch format {
                        case .json:
                            let event = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) ?? [:]
                            let object: [String: Any] = [
                                "timestamp": time, "namespace": envelope.namespace, "topic": envelope.topic,
                                "type": envelope.event.typeURL, "event": event,
                            ]
                            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                                Console.out(String(decoding: data, as: UTF8.self) + "\n")
                            }
                        case .table:
                            // Written unbuffered so a pipe sees each event as it happens.
                            Console.out("\(time) \(envelope.namespace) \(envelope.topic) \(json)\n")
                        }
                    }
                }
        }
    }
}
