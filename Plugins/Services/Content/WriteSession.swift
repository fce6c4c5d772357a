import BerthAPI
import BerthCore
import BerthGRPC
import GRPCCore

/// One Content.Write stream, with containerd's rules: the first message names the ref; each message may set the
/// expected total and digest (they must not change); WRITE appends at the current offset (offset 0 on a
/// non-empty ingest restarts it; any other mismatch is OutOfRange); COMMIT writes its data then commits.
/// Every message is answered with the ingest's status. The ref stays locked until the stream ends.
struct WriteSession {
    let store: any ContentMetadata

    func run(
        _ requests: RPCAsyncSequence<Containerd_Services_Content_V1_WriteContentRequest, any Error>,
        _ response: RPCWriter<Containerd_Services_Content_V1_WriteContentResponse>
    ) async throws {
        var iterator = requests.makeAsyncIterator()
        guard var request = try await iterator.next() else { return }
        guard !request.ref.isEmpty else { throw BerthError.invalidArgument("first message must have a reference") }
        var total = request.total
        var expected = request.expected.isEmpty ? nil : try Convert.digest(request.expected)
        let writer = try await store.writer(ref: request.ref, total: total, expected: expected)
        do {
            while true {
                try await handle(request, writer: writer, total: &total, expected: &expected, response: response)
                guard let next = try await iterator.next() else { break }
                request = next
            }
        } catch {
            await writer.close()
            throw error
        }
        await writer.close()
    }

    func handle(
        _ request: Containerd_Services_Content_V1_WriteContentRequest, writer: any MetadataContentWriter,
        total: inout Int64, expected: inout Digest?,
        response: RPCWriter<Containerd_Services_Content_V1_WriteContentResponse>
    ) async throws {
        if !request.expected.isEmpty {
            let digest = try Convert.digest(request.expected)
            if let expected, expected != digest { throw BerthError.invalidArgument("inconsistent digest provided: \(digest) != \(expected)") }
            expected = digest
            if (try? await store.info(digest)) != nil {
                try? await store.abort(request.ref)
                throw BerthError.alreadyExists("content \(digest)")
            }
        }
        if request.total > 0 {
            if total > 0, request.total != total { throw BerthError.invalidArgument("inconsistent total provided: \(request.total) != \(total)") }
            total = request.total
        }
        if request.total > 0 || !request.expected.isEmpty { try await writer.update(total: total, expected: expected) }

        var message = Containerd_Services_Content_V1_WriteContentResponse()
        message.action = request.action
        var status = try await writer.status()
        switch request.action {
        case .stat:
            break
        case .write, .commit:
            if request.offset > 0, request.offset != status.offset {
                throw RPCError(code: .outOfRange, message: "write @\(request.offset) must occur at current offset \(status.offset)")
            }
            if request.offset == 0, status.offset > 0 { try await writer.truncate(0) }
            if !request.data.isEmpty { try await writer.write([UInt8](request.data)) }
            status = try await writer.status()
            if request.action == .commit {
                _ = try await writer.commit(size: total, expected: expected, labels: request.labels)
            }
        case .UNRECOGNIZED(let value):
            throw BerthError.invalidArgument("unknown write action \(value)")
        }
        message.offset = status.offset
        message.total = status.total
        message.startedAt = Convert.timestamp(status.startedAt)
        message.updatedAt = Convert.timestamp(status.updatedAt)
        message.digest = (await writer.digest()).description
        try await response.write(message)
    }
}
