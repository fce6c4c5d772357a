import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import Foundation
import GRPCCore
import SwiftProtobuf

typealias ContentAPI = Containerd_Services_Content_V1_Content

struct Content: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "content", abstract: "Manage content (blobs by digest).",
        subcommands: [List.self, Get.self, Ingest.self, Remove.self, Label.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List content.", aliases: ["list"])
        @OptionGroup var global: GlobalOptions
        @Flag(name: .shortAndLong, help: "Print only digests.") var quiet = false
        @Argument(help: "Filters, e.g. labels.\"containerd.io/gc.root\".") var filters: [String] = []

        func run() async throws {
            var request = Containerd_Services_Content_V1_ListContentRequest()
            request.filters = filters
            let list = request
            let infos = try await global.connect { c in
                try await ContentAPI.Client(wrapping: c.client).list(list, metadata: c.metadata) { response in
                    var all: [Containerd_Services_Content_V1_Info] = []
                    for try await batch in response.messages { all += batch.info }
                    return all
                }
            }
            if quiet { return infos.forEach { print($0.digest) } }
            switch global.format {
            case .json:
                Output.json(infos.map { ["digest": $0.digest, "size": $0.size, "labels": $0.labels] as [String: Any] })
            case .table:
                Output.table(["DIGEST", "SIZE", "AGE", "LABELS"], infos.map {
                    [$0.digest, Output.bytes($0.size), Output.age($0.createdAt.date), Output.labelText($0.labels)]
                })
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a blob to stdout.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Digest.") var digest: String

        func run() async throws {
            var request = Containerd_Services_Content_V1_ReadContentRequest()
            request.digest = digest
            let read = request
            try await global.connect { c in
                try await ContentAPI.Client(wrapping: c.client).read(read, metadata: c.metadata) { response in
                    for try await chunk in response.messages {
                        guard FileSystem.writeAll(1, [UInt8](chunk.data)) else { throw BerthError.unavailable("stdout closed") }
                    }
                }
            }
        }
    }

    struct Ingest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store stdin (or a file) as a blob under an ingest ref; prints the digest.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Ingest ref (resumes an unfinished ingest of the same ref).") var ref: String
        @Option(help: "Read from this file instead of stdin.") var file: String?
        @Option(help: "Expected digest.") var expectedDigest: String?
        @Option(help: "Expected size in bytes.") var expectedSize: Int64 = 0
        @Option(help: "Labels for the blob, KEY=VALUE.") var label: [String] = []

        func run() async throws {
            let fd = file.map { open($0, O_RDONLY | O_CLOEXEC) } ?? 0
            guard fd >= 0 else { throw ValidationError("cannot open \(file ?? "-"): \(FileSystem.errnoMessage())") }
            let (ref, expected, total, labels) = (self.ref, expectedDigest ?? "", expectedSize, Output.labels(label))
            let digest = try await global.connect { c in
                try await ContentAPI.Client(wrapping: c.client).write(metadata: c.metadata) { writer in
                    var first = Containerd_Services_Content_V1_WriteContentRequest()
                    first.action = .stat
                    first.ref = ref
                    first.total = total
                    first.expected = expected
                    try await writer.write(first)
                    var offset: Int64 = 0
                    var buffer = [UInt8](repeating: 0, count: 1 << 20)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                        if n < 0 && errno == EINTR { continue }
                        guard n >= 0 else { throw BerthError.internalError("read: \(FileSystem.errnoMessage())") }
                        var message = Containerd_Services_Content_V1_WriteContentRequest()
                        message.ref = ref
                        message.offset = offset
                        message.data = Data(buffer[0..<n])
                        message.action = n == 0 ? .commit : .write
                        if n == 0 {
                            message.labels = labels
                            message.total = total > 0 ? total : offset
                        }
                        try await writer.write(message)
                        offset += Int64(n)
                        if n == 0 { break }
                    }
                } onResponse: { response in
                    var digest = ""
                    for try await status in response.messages where status.action == .commit { digest = status.digest }
                    return digest
                }
            }
            print(digest)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove blobs from the namespace.", aliases: ["remove"])
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Digests.") var digests: [String]

        func run() async throws {
            let digests = self.digests
            try await global.connect { c in
                for digest in digests {
                    var request = Containerd_Services_Content_V1_DeleteContentRequest()
                    request.digest = digest
                    _ = try await ContentAPI.Client(wrapping: c.client).delete(request, metadata: c.metadata)
                    print(digest)
                }
            }
        }
    }

    struct Label: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set labels on a blob (KEY= removes KEY).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Digest.") var digest: String
        @Argument(help: "Labels as KEY=VALUE.") var labels: [String]

        func run() async throws {
            var request = Containerd_Services_Content_V1_UpdateRequest()
            request.info.digest = digest
            let labels = Output.labels(self.labels)
            request.info.labels = labels.filter { !$0.value.isEmpty }
            request.updateMask.paths = labels.keys.sorted().map { "labels.\($0)" }
            let update = request
            let info = try await global.connect { c in
                try await ContentAPI.Client(wrapping: c.client).update(update, metadata: c.metadata).info
            }
            print(Output.labelText(info.labels))
        }
    }
}
