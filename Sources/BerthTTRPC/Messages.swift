// The envelope messages of package `ttrpc` (request.proto) and google.rpc.Status, encoded by hand with a
// minimal protobuf wire codec: they are five small messages, and the shim should not carry generated code for them.
//
//   message Request  { string service = 1; string method = 2; bytes payload = 3; int64 timeout_nano = 4;
//                      repeated KeyValue metadata = 5; }
//   message KeyValue { string key = 1; string value = 2; }
//   message Response { google.rpc.Status status = 1; bytes payload = 2; }
//   message Status   { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
//   message Any      { string type_url = 1; bytes value = 2; }

/// Request metadata: ordered key/value pairs, a key may repeat (ttrpc's `MD` is `map[string][]string`).
public struct TTRPCMetadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    public struct Pair: Sendable, Hashable {
        public var key: String
        public var value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    public var pairs: [Pair]

    public init(_ pairs: [Pair] = []) { self.pairs = pairs }
    public init(dictionaryLiteral elements: (String, String)...) {
        pairs = elements.map { Pair(key: $0.0, value: $0.1) }
    }

    /// The first value of `key`.
    public subscript(key: String) -> String? { pairs.first { $0.key == key }?.value }
    /// Every value of `key`, in order.
    public func values(_ key: String) -> [String] { pairs.filter { $0.key == key }.map(\.value) }
    /// Replaces every value of `key` with `value`.
    public mutating func set(_ key: String, _ value: String) {
        pairs.removeAll { $0.key == key }
        pairs.append(Pair(key: key, value: value))
    }
    public mutating func append(_ key: String, _ value: String) { pairs.append(Pair(key: key, value: value)) }
    public func makeIterator() -> [Pair].Iterator { pairs.makeIterator() }
    public var isEmpty: Bool { pairs.isEmpty }
}

/// A google.protobuf.Any inside a status' details, kept undecoded.
public struct TTRPCAny: Sendable, Hashable {
    public var typeURL: String
    public var value: [UInt8]
    public init(typeURL: String, value: [UInt8]) {
        self.typeURL = typeURL
        self.value = value
    }
}

/// ttrpc.Request.
public struct TTRPCRequest: Sendable, Equatable {
    public var service: String
    public var method: String
    public var payload: [UInt8]
    public var timeoutNano: Int64
    public var metadata: TTRPCMetadata

    public init(service: String, method: String, payload: [UInt8], timeoutNano: Int64 = 0, metadata: TTRPCMetadata = [:]) {
        self.service = service
        self.method = method
        self.payload = payload
        self.timeoutNano = timeoutNano
        self.metadata = metadata
    }

    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.string(1, service)
        writer.string(2, method)
        writer.bytes(3, payload)
        if timeoutNano != 0 { writer.varintField(4, UInt64(bitPattern: timeoutNano)) }
        for pair in metadata.pairs {
            var kv = ProtoWriter()
            kv.string(1, pair.key)
            kv.string(2, pair.value)
            writer.message(5, kv.buffer)
        }
        return writer.buffer
    }

    public init(decoding bytes: [UInt8]) throws(TTRPCError) {
        self.init(service: "", method: "", payload: [])
        var reader = ProtoReader(bytes)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2): service = try reader.string()
            case (2, 2): method = try reader.string()
            case (3, 2): payload = try reader.lengthDelimited()
            case (4, 0): timeoutNano = Int64(bitPattern: try reader.varint())
            case (5, 2):
                var kv = ProtoReader(try reader.lengthDelimited())
                var pair = TTRPCMetadata.Pair(key: "", value: "")
                while let (f, w) = try kv.nextField() {
                    switch (f, w) {
                    case (1, 2): pair.key = try kv.string()
                    case (2, 2): pair.value = try kv.string()
                    default: try kv.skip(w)
                    }
                }
                metadata.pairs.append(pair)
            default: try reader.skip(wire)
            }
        }
    }
}

/// ttrpc.Response: a status (absent or code 0 is success) and the method's response payload.
public struct TTRPCResponse: Sendable, Equatable {
    public var status: TTRPCError?
    public var payload: [UInt8]

    public init(status: TTRPCError?, payload: [UInt8]) {
        self.status = status
        self.payload = payload
    }

    /// As containerd's server writes it: the status is always present, code 0 for success.
    public func encoded() -> [UInt8] {
        var writer = ProtoWriter()
        writer.message(1, (status ?? TTRPCError(.ok, "")).encodedStatus())
        writer.bytes(2, payload)
        return writer.buffer
    }

    public init(decoding bytes: [UInt8]) throws(TTRPCError) {
        self.init(status: nil, payload: [])
        var reader = ProtoReader(bytes)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2): status = try TTRPCError(decodingStatus: try reader.lengthDelimited())
            case (2, 2): payload = try reader.lengthDelimited()
            default: try reader.skip(wire)
            }
        }
    }
}

extension TTRPCError {
    /// google.rpc.Status bytes for this error.
    public func encodedStatus() -> [UInt8] {
        var writer = ProtoWriter()
        if code.rawValue != 0 { writer.varintField(1, UInt64(bitPattern: Int64(code.rawValue))) }
        writer.string(2, message)
        for detail in details {
            var any = ProtoWriter()
            any.string(1, detail.typeURL)
            any.bytes(2, detail.value)
            writer.message(3, any.buffer)
        }
        return writer.buffer
    }

    /// Reads a google.rpc.Status.
    public init(decodingStatus bytes: [UInt8]) throws(TTRPCError) {
        self.init(.ok, "")
        var reader = ProtoReader(bytes)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 0): code = Code(rawValue: Int32(truncatingIfNeeded: try reader.varint()))
            case (2, 2): message = try reader.string()
            case (3, 2):
                var any = ProtoReader(try reader.lengthDelimited())
                var detail = TTRPCAny(typeURL: "", value: [])
                while let (f, w) = try any.nextField() {
                    switch (f, w) {
                    case (1, 2): detail.typeURL = try any.string()
                    case (2, 2): detail.value = try any.lengthDelimited()
                    default: try any.skip(w)
                    }
                }
                details.append(detail)
            default: try reader.skip(wire)
            }
        }
    }
}

/// Appends protobuf fields (proto3: empty strings/bytes and zero numbers are omitted by the callers' choice).
struct ProtoWriter {
    var buffer: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    mutating func varintField(_ field: Int, _ value: UInt64) {
        tag(field, 0)
        varint(value)
    }

    /// A bytes field; omitted when empty, like proto3.
    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        guard !value.isEmpty else { return }
        message(field, value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    /// A length-delimited field written even when empty (an embedded message that is present).
    mutating func message(_ field: Int, _ value: [UInt8]) {
        tag(field, 2)
        varint(UInt64(value.count))
        buffer.append(contentsOf: value)
    }
}

/// Reads protobuf fields; malformed input throws InvalidArgument.
struct ProtoReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func malformed(_ what: String) -> TTRPCError { TTRPCError(.invalidArgument, "malformed protobuf: \(what)") }

    mutating func varint() throws(TTRPCError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.count {
            let byte = bytes[position]
            position += 1
            if shift < 64 { result |= UInt64(byte & 0x7f) << shift }
            if byte < 0x80 { return result }
            shift += 7
            if shift >= 70 { throw Self.malformed("varint too long") }
        }
        throw Self.malformed("truncated varint")
    }

    /// The next (field number, wire type), or nil at the end.
    mutating func nextField() throws(TTRPCError) -> (Int, Int)? {
        guard position < bytes.count else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        guard field > 0 else { throw Self.malformed("field number 0") }
        return (field, Int(key & 7))
    }

    mutating func lengthDelimited() throws(TTRPCError) -> [UInt8] {
        let length = try varint()
        guard length <= UInt64(bytes.count - position) else { throw Self.malformed("truncated field") }
        let end = position + Int(length)
        defer { position = end }
        return Array(bytes[position..<end])
    }

    mutating func string() throws(TTRPCError) -> String { String(decoding: try lengthDelimited(), as: UTF8.self) }

    mutating func skip(_ wireType: Int) throws(TTRPCError) {
        switch wireType {
        case 0: _ = try varint()
        case 1, 5:
            let size = wireType == 1 ? 8 : 4
            guard bytes.count - position >= size else { throw Self.malformed("truncated fixed field") }
            position += size
        case 2: _ = try lengthDelimited()
        default: throw Self.malformed("wire type \(wireType)")
        }
    }
}
