import Foundation

/// A committed blob as containerd's `content.Info` describes it.
public struct ContentInfo: Sendable, Equatable {
    public var digest: Digest
    public var size: Int64
    public var createdAt: Date
    public var updatedAt: Date
    public var labels: [String: String]

    public init(digest: Digest, size: Int64, createdAt: Date, updatedAt: Date, labels: [String: String] = [:]) {
        self.digest = digest
        self.size = size
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.labels = labels
    }
}

/// The state of an ingest (an unfinished write), containerd's `content.Status`.
public struct IngestStatus: Sendable, Equatable {
    public var ref: String
    public var offset: Int64
    public var total: Int64
    public var expected: Digest?
    public var startedAt: Date
    public var updatedAt: Date

    public init(ref: String, offset: Int64, total: Int64, expected: Digest?, startedAt: Date, updatedAt: Date) {
        self.ref = ref
        self.offset = offset
        self.total = total
        self.expected = expected
        self.startedAt = startedAt
        self.updatedAt = updatedAt
    }
}

/// The blob store a content plugin (`io.containerd.content.v1`) provides. It is not namespaced and keeps no
/// labels: the metadata plugin wraps it with per-namespace references, labels and garbage collection.
public protocol ContentStore: Sendable {
    /// NotFound when the blob is not committed.
    func info(_ digest: Digest) async throws(BerthError) -> ContentInfo
    /// Every committed blob.
    func walk() async throws(BerthError) -> [ContentInfo]
    /// NotFound when absent.
    func delete(_ digest: Digest) async throws(BerthError)
    /// Random-access reader over a committed blob.
    func reader(_ digest: Digest) async throws(BerthError) -> any ContentReader
    /// Status of an ingest; NotFound when there is none with that ref.
    func status(_ ref: String) async throws(BerthError) -> IngestStatus
    /// Every ingest, locked or not.
    func statuses() async throws(BerthError) -> [IngestStatus]
    /// Removes an ingest and its data; NotFound when absent.
    func abort(_ ref: String) async throws(BerthError)
    /// Opens the ingest `ref`, creating it or resuming it where it stopped (also after a crash). One writer per ref:
    /// a second gets Unavailable "ref <ref> locked". `total`/`expected` of 0/nil keep what the ingest has.
    func writer(ref: String, total: Int64, expected: Digest?) async throws(BerthError) -> any ContentWriter
}

public protocol ContentReader: Sendable {
    var size: Int64 { get }
    /// Up to `count` bytes from `offset`; fewer only at the end of the blob.
    func read(at offset: Int64, count: Int) async throws(BerthError) -> [UInt8]
    func close() async
}

/// An open ingest. Bytes are appended at the current offset and hashed as they arrive.
public protocol ContentWriter: Sendable {
    var ref: String { get }
    func write(_ bytes: [UInt8]) async throws(BerthError)
    /// Drops data after `size` (containerd's clients truncate to 0 to restart a write).
    func truncate(_ size: Int64) async throws(BerthError)
    /// Sets the expected total and digest (0 / nil leave them unchanged).
    func update(total: Int64, expected: Digest?) async throws(BerthError)
    func status() async throws(BerthError) -> IngestStatus
    /// The digest of the bytes written so far.
    func digest() async -> Digest
    /// Verifies size (when > 0) and digest (when given, else the ingest's expected one), makes the blob durable and
    /// visible atomically, and removes the ingest. A mismatch is FailedPrecondition and commits nothing; an
    /// existing blob is AlreadyExists (the ingest is removed either way on success or AlreadyExists).
    func commit(size: Int64, expected: Digest?) async throws(BerthError) -> Digest
    /// Releases the ref lock; the ingest stays so the write can resume later.
    func close() async
}
