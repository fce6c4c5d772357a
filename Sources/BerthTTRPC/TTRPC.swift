// ttrpc: containerd's small RPC protocol between the daemon and its shims (github.com/containerd/ttrpc).
//
// A connection carries frames: a 10-byte header (data length uint32 BE, stream id uint32 BE, type uint8,
// flags uint8) and at most 4 MiB of data. A client opens a stream with a Request frame on an odd, increasing
// stream id; the server answers with one Response frame (unary), or with Data frames that end in one flagged
// "remote closed" (server streaming). Request and Response are protobuf messages of package `ttrpc`, encoded
// here by hand (see Messages.swift) so this module needs neither generated code nor BerthAPI.
//
// This module runs inside `berth-shim`, so it keeps to Glibc sockets and a few threads: no Foundation, no NIO.

/// Frame types and flags of the ttrpc wire format.
public enum TTRPCFrame {
    /// Bytes in a frame header.
    public static let headerLength = 10
    /// Largest data length a peer accepts (containerd's `messageLengthMax`, 4 MiB).
    public static let maxMessageLength = 4 << 20

    /// The message type byte.
    public enum Kind: UInt8, Sendable {
        case request = 1
        case response = 2
        case data = 3
    }

    /// Flag bits: `remoteClosed` (no more data from the sender), `remoteOpen` (the sender keeps sending),
    /// `noData` (a Data frame that carries no message, only flags).
    public static let flagRemoteClosed: UInt8 = 0x1
    public static let flagRemoteOpen: UInt8 = 0x2
    public static let flagNoData: UInt8 = 0x4

    /// A decoded frame header.
    public struct Header: Sendable, Equatable {
        public var length: UInt32
        public var streamID: UInt32
        public var type: UInt8
        public var flags: UInt8

        public init(length: UInt32, streamID: UInt32, type: UInt8, flags: UInt8) {
            self.length = length
            self.streamID = streamID
            self.type = type
            self.flags = flags
        }

        /// Reads a header from the first 10 bytes of `bytes`.
        public init(decoding bytes: some RandomAccessCollection<UInt8>) {
            var iterator = bytes.makeIterator()
            func next() -> UInt32 { UInt32(iterator.next() ?? 0) }
            length = next() << 24 | next() << 16 | next() << 8 | next()
            streamID = next() << 24 | next() << 16 | next() << 8 | next()
            type = UInt8(truncatingIfNeeded: next())
            flags = UInt8(truncatingIfNeeded: next())
        }

        /// Appends the 10 header bytes to `buffer`.
        public func encode(into buffer: inout [UInt8]) {
            for shift in stride(from: 24, through: 0, by: -8) { buffer.append(UInt8(truncatingIfNeeded: length >> shift)) }
            for shift in stride(from: 24, through: 0, by: -8) { buffer.append(UInt8(truncatingIfNeeded: streamID >> shift)) }
            buffer.append(type)
            buffer.append(flags)
        }
    }
}

/// containerd's ttrpc header carrying the namespace (`namespaces.TTRPCHeader`).
public let ttrpcNamespaceHeader = "containerd-namespace-ttrpc"
