import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import BerthOCI
import Foundation
import SwiftProtobuf

/// Archive bytes over a stream with containerd's flow control: the receiver grants 64 KiB windows, the sender
/// sends `Data` chunks of at most 32 KiB within them.
enum ArchiveStreaming {
    static let maxRead = 32 * 1024
    static let windowSize = Int32(2 * maxRead)

    /// Sends the file (or stdin) on `stream` as the daemon grants windows, then half-closes it.
    static func send(_ input: FileHandle, on stream: ClientStream) async throws {
        var remaining: Int64 = 0
        var iterator = stream.inbound.makeAsyncIterator()
        defer { stream.outbound.finish() }
        while true {
            while remaining <= 0 {
                guard let any = try await iterator.next() else { return }
                if let update = TransferMessages.decode(any, as: Containerd_Types_Transfer_WindowUpdate.self) {
                    remaining += Int64(update.update)
                }
            }
            let chunk = try input.read(upToCount: Int(min(Int64(maxRead), remaining))) ?? Data()
            if chunk.isEmpty { break }
            var data = Containerd_Types_Transfer_Data()
            data.data = chunk
            stream.send(data)
            remaining -= Int64(chunk.count)
        }
        stream.outbound.finish()
        // Window updates keep coming until the daemon closes the stream.
        while try await iterator.next() != nil {}
    }

    /// Receives `Data` from `stream` into `output`, granting a window whenever less than one is outstanding.
    static func receive(_ stream: ClientStream, into output: FileHandle) async throws {
        var window: Int64 = 0
        var iterator = stream.inbound.makeAsyncIterator()
        while true {
            if window < Int64(windowSize) {
                var update = Containerd_Types_Transfer_WindowUpdate()
                update.update = windowSize
                stream.send(update)
                window += Int64(windowSize)
            }
            guard let any = try await iterator.next() else { break }
            guard let data = TransferMessages.decode(any, as: Containerd_Types_Transfer_Data.self) else { continue }
            try output.write(contentsOf: data.data)
            window -= Int64(data.data.count)
        }
    }
}

struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Import an OCI or Docker image archive into berthd (and unpack it).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Do not unpack the imported image.") var noUnpack = false
    @Option(help: "Name the archive's whole index as this image.") var indexName = ""
    @Option(help: "Prefix for names in the archive that are only tags (default import-<date>).") var baseName: String?
    @Option(help: "Snapshotter to unpack into (default the daemon's).") var snapshotter = ""
    @Option(help: "Platform to import and unpack (default the host's).") var platform: String?
    @Flag(help: "Import every platform's content (only the host's is unpacked).") var allPlatforms = false
    @Option(help: "Labels for the created images (KEY=VALUE).") var label: [String] = []
    @Argument(help: "Archive file, or - for stdin.") var file: String

    func run() async throws {
        var store = Containerd_Types_Transfer_ImageStore()
        store.name = indexName
        store.labels = Output.labels(label)
        var prefix = Containerd_Types_Transfer_ImageReference()
        if let baseName {
            prefix.name = baseName
        } else {
            let format = DateFormatter()
            format.dateFormat = "yyyy-MM-dd"
            prefix.name = "import-" + format.string(from: Date())
            prefix.allowOverwrite = true
        }
        prefix.isPrefix = true
        store.extraReferences = [prefix]
        let unpackPlatform = PlatformFlags.message(try platform.map { try Platforms.parse($0) } ?? Platforms.host)
        if !allPlatforms { store.platforms = [unpackPlatform] }
        if !noUnpack { store.unpacks = [PlatformFlags.unpack(unpackPlatform, snapshotter)] }
        let input: FileHandle
        if file == "-" {
            input = FileHandle.standardInput
        } else {
            guard let handle = FileHandle(forReadingAtPath: file) else {
                Console.err("berth: cannot open \(file)\n")
                throw ExitCode.failure
            }
            input = handle
        }
        let sendable = SendableHandle(handle: input)
        let destination = TransferMessages.any(store)
        try await TransferRunner.run(global) { opener in
            let stream = try await opener.open(TransferMessages.streamID("import"))
            await opener.spawn { try await ArchiveStreaming.send(sendable.handle, on: stream) }
            var source = Containerd_Types_Transfer_ImageImportStream()
            source.stream = stream.id
            return (TransferMessages.any(source), destination)
        }
    }
}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Export images from berthd as an OCI (or Docker) archive.")
    // The global options, spelled out here: `--format` is the archive's layout for this command.
    @Option(name: [.customShort("a"), .long], help: "berthd's socket (env BERTH_ADDRESS).") var address: String?
    @Option(name: [.short, .long], help: "Namespace (env BERTH_NAMESPACE; default \"default\").") var namespace: String?
    @Option(help: "Platform to export (repeatable; default the host's).") var platform: [String] = []
    @Flag(help: "Export every platform.") var allPlatforms = false
    @Option(name: .customLong("format"), help: "Archive layout: oci or docker.") var archiveFormat = "oci"
    @Flag(help: "Leave Docker's manifest.json out of an OCI archive.") var skipManifestJson = false
    @Argument(help: "Output file, or - for stdout.") var file: String
    @Argument(help: "Images to export.") var images: [String]

    func run() async throws {
        let global = try GlobalOptions.parse(
            (address.map { ["--address", $0] } ?? []) + (namespace.map { ["--namespace", $0] } ?? []))
        guard ["oci", "docker"].contains(archiveFormat) else { throw ValidationError("--format must be oci or docker") }
        var store = Containerd_Types_Transfer_ImageStore()
        store.extraReferences = images.map { image in
            var reference = Containerd_Types_Transfer_ImageReference()
            reference.name = image
            return reference
        }
        var destination = Containerd_Types_Transfer_ImageExportStream()
        destination.mediaType = archiveFormat == "docker" ? "application/vnd.docker.image.archive.v1+tar" : ""
        destination.platforms = try PlatformFlags.parse(platform)
        destination.allPlatforms = allPlatforms
        destination.skipCompatibilityManifest = skipManifestJson
        let toStdout = file == "-"
        let output: FileHandle
        if toStdout {
            output = FileHandle.standardOutput
        } else {
            guard FileManager.default.createFile(atPath: file, contents: nil),
                let handle = FileHandle(forWritingAtPath: file)
            else {
                Console.err("berth: cannot create \(file)\n")
                throw ExitCode.failure
            }
            output = handle
        }
        let sendable = SendableHandle(handle: output)
        let exportTemplate = destination
        let source = TransferMessages.any(store)
        try await TransferRunner.run(global, progressToStandardError: toStdout) { opener in
            let stream = try await opener.open(TransferMessages.streamID("export"))
            await opener.spawn { try await ArchiveStreaming.receive(stream, into: sendable.handle) }
            var destination = exportTemplate
            destination.stream = stream.id
            return (source, TransferMessages.any(destination))
        }
        if !toStdout { try output.close() }
    }
}

/// A file handle passed to the one task that reads or writes it.
struct SendableHandle: @unchecked Sendable {
    let handle: FileHandle
}
