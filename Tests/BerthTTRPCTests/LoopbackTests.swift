import BerthAPI
import BerthTestSupport
import BerthTTRPC
import Foundation
import Glibc
import SwiftProtobuf
import Testing

/// Our ttrpc client against our ttrpc server on a real unix socket.
@Suite("ttrpc client ↔ server")
struct LoopbackTests {
    struct Failure: Error, TTRPCErrorConvertible {
        var ttrpcError: TTRPCError { TTRPCError(.failedPrecondition, "custom failure") }
    }

    /// Starts a server with an echo service and some failing methods; runs `body`; stops everything.
    func withServer(_ body: (TTRPCServer, String) async throws -> Void) async throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let path = dir.file("s.sock")
        let server = TTRPCServer()
        server.register(service: "test.Echo", method: "Echo") { payload, _ in payload }
        server.register(service: "test.Echo", method: "Metadata") { _, context in
            Array(context.metadata.pairs.map { "\($0.key)=\($0.value)" }.joined(separator: ",").utf8)
        }
        server.register(service: "test.Echo", method: "NotFound") { _, _ in
            throw TTRPCError(.notFound, "container \"x\": not found")
        }
        server.register(service: "test.Echo", method: "Custom") { _, _ in throw Failure() }
        server.register(service: "test.Echo", method: "Plain") { _, _ in throw CocoaError(.fileNoSuchFile) }
        server.register(service: "test.Echo", method: "Hang") { _, context in
            // Sleeps until cancelled at the request's deadline.
            try await Task.sleep(for: .seconds(600))
            return Array("deadline \(context.deadline != nil)".utf8)
        }
        server.register(service: "test.Echo", method: "Big") { payload, _ in
            [UInt8](repeating: 7, count: Int(payload.first ?? 0) << 20)
        }
        server.register(service: "containerd.task.v2.Task", method: "State") {
            (request: Containerd_Task_V2_StateRequest, context: TTRPCContext) -> Containerd_Task_V2_StateResponse in
            var response = Containerd_Task_V2_StateResponse()
            response.id = request.id
            response.execID = context.namespace ?? ""
            response.pid = 42
            return response
        }
        server.registerStream(service: "test.Echo", method: "Count") { payload, _, stream in
            for index in 0..<Int(payload.first ?? 0) { try stream.send([UInt8(index)]) }
        }
        server.registerStream(service: "test.Echo", method: "CountThenFail") { _, _, stream in
            try stream.send([1])
            throw TTRPCError(.aborted, "stopped")
        }
        try server.listen(path: path)
        defer { server.close() }
        try await body(server, path)
    }

    @Test func unaryEchoAndTypedMessages() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            let reply = try await client.call(service: "test.Echo", method: "Echo", payload: Array("hello".utf8))
            #expect(String(decoding: reply, as: UTF8.self) == "hello")
            let empty = try await client.call(service: "test.Echo", method: "Echo", payload: [])
            #expect(empty.isEmpty)

            var request = Containerd_Task_V2_StateRequest()
            request.id = "c1"
            let state = try await client.call(
                service: "containerd.task.v2.Task", method: "State", request: request,
                responseType: Containerd_Task_V2_StateResponse.self, metadata: [ttrpcNamespaceHeader: "ns1"])
            #expect(state.id == "c1")
            #expect(state.execID == "ns1")
            #expect(state.pid == 42)
        }
    }

    @Test func metadataRoundTrip() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            var metadata: TTRPCMetadata = ["containerd-namespace-ttrpc": "default"]
            metadata.append("k", "v1")
            metadata.append("k", "v2")
            let reply = try await client.call(service: "test.Echo", method: "Metadata", payload: [], metadata: metadata)
            #expect(String(decoding: reply, as: UTF8.self) == "containerd-namespace-ttrpc=default,k=v1,k=v2")
        }
    }

    @Test func fiftyConcurrentCallsOnOneConnection() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            let replies = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for index in 0..<50 {
                    group.addTask {
                        let payload = Array("call-\(index)".utf8) + [UInt8](repeating: UInt8(index), count: index * 1000)
                        return (index, try await client.call(service: "test.Echo", method: "Echo", payload: payload))
                    }
                }
                var all: [Int: [UInt8]] = [:]
                for try await (index, reply) in group { all[index] = reply }
                return all
            }
            #expect(replies.count == 50)
            for (index, reply) in replies {
                #expect(reply == Array("call-\(index)".utf8) + [UInt8](repeating: UInt8(index), count: index * 1000))
            }
        }
    }

    @Test func errorsCarryCodeAndMessage() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            func failure(_ service: String, _ method: String) async -> TTRPCError? {
                do throws(TTRPCError) {
                    _ = try await client.call(service: service, method: method, payload: [])
                    return nil
                } catch { return error }
            }
            #expect(await failure("test.Echo", "NotFound") == TTRPCError(.notFound, "container \"x\": not found"))
            #expect(await failure("test.Echo", "Custom") == TTRPCError(.failedPrecondition, "custom failure"))
            #expect(await failure("test.Echo", "Plain")?.code == .unknown)
            #expect(await failure("test.Nope", "Echo") == TTRPCError(.unimplemented, "service test.Nope"))
            #expect(await failure("test.Echo", "Nope") == TTRPCError(.unimplemented, "method Nope"))
            // The connection is still good after errors.
            #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [1]) == [1])
        }
    }

    @Test func largePayloadsAndOversizeRejection() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            #expect(try await client.call(service: "test.Echo", method: "Echo", payload: big) == big)

            // A request over 4 MiB is refused by the client before it is sent.
            let huge = [UInt8](repeating: 1, count: (4 << 20) + 1)
            await #expect(throws: TTRPCError.self) {
                _ = try await client.call(service: "test.Echo", method: "Echo", payload: huge)
            }
            do throws(TTRPCError) {
                _ = try await client.call(service: "test.Echo", method: "Echo", payload: huge)
            } catch {
                #expect(error.code == .resourceExhausted)
            }
            // A response over 4 MiB is refused by the server, which answers with ResourceExhausted instead.
            do throws(TTRPCError) {
                _ = try await client.call(service: "test.Echo", method: "Big", payload: [5])
                Issue.record("a 5 MiB response was sent")
            } catch {
                #expect(error.code == .resourceExhausted)
            }
            #expect(try await client.call(service: "test.Echo", method: "Big", payload: [3]).count == 3 << 20)
        }
    }

    @Test func serverAnswersOversizedAndInvalidFrames() async throws {
        try await withServer { _, path in
            let raw = try RawConnection(path: path)
            // Oversized request: the data is read and dropped, the stream gets ResourceExhausted.
            raw.sendFrame(streamID: 1, type: 1, length: (4 << 20) + 10, data: [UInt8](repeating: 0, count: (4 << 20) + 10))
            let (header, data) = try #require(raw.readFrame())
            #expect(header.streamID == 1 && header.type == 2)
            let status = try #require(try TTRPCResponse(decoding: data).status)
            #expect(status.code == .resourceExhausted)
            #expect(status.message == "message length 4194314 exceed maximum message size of 4194304")

            // Even stream id: InvalidArgument on that id.
            let request = TTRPCRequest(service: "test.Echo", method: "Echo", payload: [9]).encoded()
            raw.sendFrame(streamID: 2, type: 1, data: request)
            let (evenHeader, evenData) = try #require(raw.readFrame())
            #expect(evenHeader.streamID == 2)
            #expect(try TTRPCResponse(decoding: evenData).status?.code == .invalidArgument)

            // The connection still serves a valid request, then refuses a reused id.
            raw.sendFrame(streamID: 3, type: 1, data: request)
            let (okHeader, okData) = try #require(raw.readFrame())
            #expect(okHeader.streamID == 3)
            let ok = try TTRPCResponse(decoding: okData)
            #expect(ok.status?.code ?? .ok == .ok)
            #expect(ok.payload == [9])
            raw.sendFrame(streamID: 3, type: 1, data: request)
            let (_, reusedData) = try #require(raw.readFrame())
            #expect(try TTRPCResponse(decoding: reusedData).status
                == TTRPCError(.invalidArgument, "StreamID cannot be re-used and must increment"))

            // Garbage as a request: InvalidArgument.
            raw.sendFrame(streamID: 5, type: 1, data: [0xff, 0xff])
            let (_, badData) = try #require(raw.readFrame())
            #expect(try TTRPCResponse(decoding: badData).status?.code == .invalidArgument)
        }
    }

    @Test func timeoutReachesTheServerAndFailsTheCall() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            do throws(TTRPCError) {
                _ = try await client.call(service: "test.Echo", method: "Hang", payload: [], timeout: .milliseconds(200))
                Issue.record("Hang returned")
            } catch {
                #expect(error.code == .deadlineExceeded)
            }
            // The server saw timeout_nano too: a raw request with a timeout comes back DeadlineExceeded from it.
            let raw = try RawConnection(path: path)
            raw.sendFrame(
                streamID: 1, type: 1,
                data: TTRPCRequest(service: "test.Echo", method: "Hang", payload: [], timeoutNano: 100_000_000).encoded())
            let (_, data) = try #require(raw.readFrame())
            #expect(try TTRPCResponse(decoding: data).status?.code == .deadlineExceeded)
        }
    }

    @Test func serverStreaming() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            var received: [[UInt8]] = []
            for try await message in client.serverStream(service: "test.Echo", method: "Count", payload: [5]) {
                received.append(message)
            }
            #expect(received == [[0], [1], [2], [3], [4]])

            var partial: [[UInt8]] = []
            do {
                for try await message in client.serverStream(service: "test.Echo", method: "CountThenFail", payload: []) {
                    partial.append(message)
                }
                Issue.record("stream did not fail")
            } catch let error as TTRPCError {
                #expect(error == TTRPCError(.aborted, "stopped"))
            }
            #expect(partial == [[1]])
        }
    }

    @Test func closingTheServerFailsPendingCallsAndNotifiesTheClient() async throws {
        try await withServer { server, path in
            let closed = Box(false)
            let client = try TTRPCClient(path: path, onClose: { closed.update { $0 = true } })
            let pending = Task { () -> TTRPCError? in
                do throws(TTRPCError) {
                    _ = try await client.call(service: "test.Echo", method: "Hang", payload: [])
                    return nil
                } catch { return error }
            }
            // The call is in flight once the server has a request to cancel; closing answers nothing more.
            #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [1]) == [1])
            server.close()
            let error = await pending.value
            #expect(error?.isConnectionClosed == true || error?.code == .canceled)
            let condition1 = await eventually { closed.get }
            #expect(condition1)
            #expect(client.isClosed)
            do throws(TTRPCError) {
                _ = try await client.call(service: "test.Echo", method: "Echo", payload: [])
                Issue.record("call on a closed client succeeded")
            } catch {
                #expect(error.isConnectionClosed)
            }
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(throws: TTRPCError.self) { _ = try TTRPCClient(path: path) }
        }
    }

    @Test func gracefulShutdownAnswersRequestsInFlight() async throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let path = dir.file("g.sock")
        let server = TTRPCServer()
        let started = Box(false)
        server.register(service: "s", method: "Slow") { payload, _ in
            started.update { $0 = true }
            try await Task.sleep(for: .milliseconds(300))
            return payload
        }
        try server.listen(path: path)
        let client = try TTRPCClient(path: path)
        defer { client.close() }
        let call = Task { try await client.call(service: "s", method: "Slow", payload: [4, 2]) }
        let condition2 = await eventually { started.get }
        #expect(condition2)
        await server.shutdown()
        #expect(try await call.value == [4, 2])
        let condition3 = await eventually { client.isClosed }
        #expect(condition3)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// Prints the mean latency of sequential unary calls (a figure for the record; nothing timed is asserted).
    @Test func sequentialCallLatency() async throws {
        try await withServer { _, path in
            let client = try TTRPCClient(path: path)
            defer { client.close() }
            let payload = [UInt8](repeating: 1, count: 64)
            let count = 2000
            let start = ContinuousClock.now
            for _ in 0..<count {
                let reply = try await client.call(service: "test.Echo", method: "Echo", payload: payload)
                #expect(reply == payload)
            }
            let elapsed = ContinuousClock.now - start
            print("ttrpc loopback: \(count) sequential 64-byte echo calls in \(elapsed), \(elapsed / count) each")
        }
    }

    @Test func frameHeaderAndEnvelopeEncoding() throws {
        var bytes: [UInt8] = []
        TTRPCFrame.Header(length: 0x0102_0304, streamID: 0x0A0B_0C0D, type: 2, flags: 5).encode(into: &bytes)
        #expect(bytes == [1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D, 2, 5])
        #expect(TTRPCFrame.Header(decoding: bytes) == TTRPCFrame.Header(length: 0x0102_0304, streamID: 0x0A0B_0C0D, type: 2, flags: 5))

        let request = TTRPCRequest(
            service: "svc", method: "M", payload: [1, 2], timeoutNano: 1_000_000_000, metadata: ["a": "b"])
        // Field by field as Go's ttrpc.Request marshals it.
        #expect(request.encoded() == [
            0x0a, 3, 0x73, 0x76, 0x63, 0x12, 1, 0x4d, 0x1a, 2, 1, 2, 0x20, 0x80, 0x94, 0xeb, 0xdc, 0x03,
            0x2a, 6, 0x0a, 1, 0x61, 0x12, 1, 0x62,
        ])
        #expect(try TTRPCRequest(decoding: request.encoded()) == request)

        let status = TTRPCError(.notFound, "x", details: [TTRPCAny(typeURL: "t", value: [1])])
        let response = TTRPCResponse(status: status, payload: [3])
        #expect(try TTRPCResponse(decoding: response.encoded()) == response)
        // Success: an empty status message is present, like containerd's server writes it.
        #expect(TTRPCResponse(status: nil, payload: []).encoded() == [0x0a, 0])
        // Status encoding equals google.rpc.Status from BerthAPI.
        var google = Google_Rpc_Status()
        google.code = 5
        google.message = "x"
        var any = Google_Protobuf_Any()
        any.typeURL = "t"
        any.value = Data([1])
        google.details = [any]
        #expect(try google.serializedBytes() == status.encodedStatus())
    }
}
