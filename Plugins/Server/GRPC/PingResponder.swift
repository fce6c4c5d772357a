import NIOCore

/// Answers the client's HTTP/2 PING frames before they reach NIOHTTP2.
///
/// grpc-go clients (ctr, containerd's client) send a bandwidth-estimation PING each time they receive data, so a
/// streamed ingest sends one per written chunk. NIOHTTP2 treats more than 200 control frames in 30 s as a flood
/// and closes the connection with ENHANCE_YOUR_CALM, which breaks any ingest over ~200 MiB, and the gRPC
/// transport does not expose that limit. The API socket is local and PINGs are cheap to answer, so this handler,
/// first in each connection's pipeline, replies to them itself and passes every other byte through unchanged.
final class PingResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let prefaceLength = 24  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    static let headerLength = 9
    static let pingType: UInt8 = 6
    static let ackFlag: UInt8 = 1

    private var prefaceRemaining = PingResponder.prefaceLength
    /// Bytes of the current non-PING frame's payload still to pass through.
    private var passthrough = 0
    /// A frame header split across reads.
    private var header: [UInt8] = []
    /// The payload of a PING being read (8 bytes), when inside one.
    private var ping: [UInt8]?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        // Fast path: the whole read belongs to a frame being passed through.
        if passthrough >= input.readableBytes, prefaceRemaining == 0, ping == nil, header.isEmpty {
            passthrough -= input.readableBytes
            context.fireChannelRead(data)
            return
        }
        var output = context.channel.allocator.buffer(capacity: input.readableBytes)
        while input.readableBytes > 0 {
            if prefaceRemaining > 0 || passthrough > 0 {
                let count = min(prefaceRemaining > 0 ? prefaceRemaining : passthrough, input.readableBytes)
                if var slice = input.readSlice(length: count) { output.writeBuffer(&slice) }
                if prefaceRemaining > 0 { prefaceRemaining -= count } else { passthrough -= count }
            } else if var payload = ping {
                let count = min(8 - payload.count, input.readableBytes)
                payload += input.readBytes(length: count) ?? []
                ping = payload
                if payload.count == 8 {
                    ping = nil
                    var ack = context.channel.allocator.buffer(capacity: Self.headerLength + 8)
                    ack.writeBytes([0, 0, 8, Self.pingType, Self.ackFlag, 0, 0, 0, 0] + payload)
                    context.writeAndFlush(NIOAny(ack), promise: nil)
                }
            } else {
                let count = min(Self.headerLength - header.count, input.readableBytes)
                header += input.readBytes(length: count) ?? []
                guard header.count == Self.headerLength else { continue }
                let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                if header[3] == Self.pingType, header[4] & Self.ackFlag == 0, length == 8 {
                    ping = []
                } else {
                    output.writeBytes(header)
                    passthrough = length
                }
                header = []
            }
        }
        if output.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(output)) }
    }
}
