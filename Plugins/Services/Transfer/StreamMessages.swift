import BerthAPI
import BerthCore
import BerthImage
import BerthOCI
import BerthRegistry
import Foundation
import SwiftProtobuf

/// Protobuf messages on named streams, with type URLs as containerd's typeurl writes them (the bare full name).
enum StreamCoding {
    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws(BerthError) -> StreamMessage {
        do {
            return StreamMessage(typeURL: M.protoMessageName, value: try message.serializedBytes())
        } catch {
            throw .internalError("encoding \(M.protoMessageName): \(error)")
        }
    }

    /// The message if `stream` carries an `M`, nil for another type.
    static func decode<M: SwiftProtobuf.Message>(_ stream: StreamMessage, as: M.Type) throws(BerthError) -> M? {
        guard stream.typeName == M.protoMessageName else { return nil }
        do {
            return try M(serializedBytes: stream.value)
        } catch {
            throw .invalidArgument("invalid \(M.protoMessageName): \(error)")
        }
    }
}

/// containerd's flow control for archive bytes: the receiver grants windows (`WindowUpdate`), the sender sends
/// `Data` chunks of at most 32 KiB within the window.
enum FlowControl {
    static let maxRead = 32 * 1024
    static let windowSize = Int32(2 * maxRead)
}

/// The daemon reading an archive the client streams (import): grants a window whenever less than one window is
/// outstanding, as containerd's `ReceiveStream`; the end of the client's side is the end of the archive.
actor ImportByteStream: TransferByteStream {
    let stream: any ManagedStream
    private var window: Int32 = 0
    private var finished = false

    init(stream: any ManagedStream) {
        self.stream = stream
    }

    func read() async throws(BerthError) -> [UInt8] {
        while !finished {
            if window < FlowControl.windowSize {
                var update = Containerd_Types_Transfer_WindowUpdate()
                update.update = FlowControl.windowSize
                // A failed send shows up as the end of the stream on the next receive.
                if (try? await stream.send(StreamCoding.encode(update))) != nil { window += FlowControl.windowSize }
            }
            guard let message = try await stream.receive() else {
                finished = true
                break
            }
            guard let data = try StreamCoding.decode(message, as: Containerd_Types_Transfer_Data.self) else { continue }
            window -= Int32(clamping: data.data.count)
            if !data.data.isEmpty { return [UInt8](data.data) }
        }
        return []
    }

    func write(_ bytes: [UInt8]) async throws(BerthError) {
        throw .failedPrecondition("an import stream is read-only")
    }

    func close() async {
        finished = true
        await stream.close()
    }
}

/// The daemon writing an archive to the client (export): waits for the client's window grants and sends `Data`
/// chunks within them, as containerd's `WriteByteStream`. Closing ends the stream, which the client reads as EOF.
actor ExportByteStream: TransferByteStream {
    let stream: any ManagedStream
    private var remaining: Int64 = 0
    private var clientGone = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var pump: Task<Void, Never>?

    init(stream: any ManagedStream) {
        self.stream = stream
    }

    /// Starts reading the client's window updates.
    func start() {
        guard pump == nil else { return }
        let stream = self.stream
        pump = Task { [weak self] in
            while true {
                guard let message = try? await stream.receive() else { break }
                guard let update = try? StreamCoding.decode(message, as: Containerd_Types_Transfer_WindowUpdate.self)
                else { continue }
                await self?.grant(Int64(update.update))
            }
            await self?.end()
        }
    }

    private func grant(_ bytes: Int64) {
        remaining += bytes
        wake()
    }

    private func end() {
        clientGone = true
        wake()
    }

    private func wake() {
        let waiting = waiters
        waiters = []
        for waiter in waiting { waiter.resume() }
    }

    func read() async throws(BerthError) -> [UInt8] {
        throw .failedPrecondition("an export stream is write-only")
    }

    func write(_ bytes: [UInt8]) async throws(BerthError) {
        start()
        var offset = 0
        while offset < bytes.count {
            while remaining <= 0 {
                if clientGone { throw .unavailable("export stream closed by the client") }
                await withCheckedContinuation { waiters.append($0) }
            }
            let count = min(FlowControl.maxRead, Int(remaining), bytes.count - offset)
            var data = Containerd_Types_Transfer_Data()
            data.data = Data(bytes[offset..<offset + count])
            try await stream.send(StreamCoding.encode(data))
            remaining -= Int64(count)
            offset += count
        }
    }

    func close() async {
        pump?.cancel()
        clientGone = true
        wake()
        await stream.close()
    }
}

/// Sends a transfer's progress to the client's progress stream in order, without ever blocking the transfer.
final class ProgressForwarder: Sendable {
    private let continuation: AsyncStream<TransferProgress>.Continuation
    private let sender: Task<Void, Never>

    init(stream: any ManagedStream) {
        let (events, continuation) = AsyncStream<TransferProgress>.makeStream()
        self.continuation = continuation
        sender = Task {
            for await event in events {
                guard let message = try? StreamCoding.encode(ProgressForwarder.message(event)) else { continue }
                // A client that stopped listening must not fail the transfer.
                _ = try? await stream.send(message)
            }
        }
    }

    var sink: ProgressSink {
        let continuation = self.continuation
        return { continuation.yield($0) }
    }

    /// Sends what is queued, then stops.
    func finish() async {
        continuation.finish()
        await sender.value
    }

    static func message(_ event: TransferProgress) -> Containerd_Types_Transfer_Progress {
        var out = Containerd_Types_Transfer_Progress()
        out.event = event.event
        out.name = event.name
        out.parents = event.parents
        out.progress = event.progress
        out.total = event.total
        if let descriptor = event.descriptor {
            var desc = Containerd_Types_Descriptor()
            desc.mediaType = descriptor.mediaType
            desc.digest = descriptor.digest.description
            desc.size = descriptor.size
            desc.annotations = descriptor.annotations ?? [:]
            out.desc = desc
        }
        return out
    }
}

/// Asks the client for credentials over its auth stream (`AuthRequest` → `AuthResponse`), one question at a time.
actor AuthAsker {
    let stream: any ManagedStream
    let reference: String

    init(stream: any ManagedStream, reference: String) {
        self.stream = stream
        self.reference = reference
    }

    func credentials(host: String) async throws(BerthError) -> Credentials? {
        var request = Containerd_Types_Transfer_AuthRequest()
        request.host = host
        request.reference = reference
        try await stream.send(StreamCoding.encode(request))
        while let message = try await stream.receive() {
            guard let response = try StreamCoding.decode(message, as: Containerd_Types_Transfer_AuthResponse.self)
            else { continue }
            switch response.authType {
            case .credentials: return Credentials(username: response.username, secret: response.secret)
            case .refresh: return Credentials(username: "", secret: response.secret)
            case .none, .header, .UNRECOGNIZED: return nil
            }
        }
        return nil
    }
}
