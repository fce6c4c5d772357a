import BerthCore
import Foundation

/// The scenarios of `ContentStoreSuite`. Each opens its store(s) on `directory` and checks one behaviour of the
/// `ContentStore` contract; error texts are checked where clients see containerd's wording.
extension ScenarioContext {
    func run() async throws {
        let store = try await open(directory)
        switch scenario {
        case .writeCommitRead: try await writeCommitRead(store)
        case .randomAccessRead: try await randomAccessRead(store)
        case .emptyContent: try await emptyContent(store)
        case .commitWrongSize: try await commitWrongSize(store)
        case .commitWrongDigest: try await commitWrongDigest(store)
        case .commitRecordedExpected: try await commitRecordedExpected(store)
        case .resumeAfterClose: try await resumeAfterClose(store)
        case .truncateAndRewrite: try await truncateAndRewrite(store)
        case .truncatePartial: try await truncatePartial(store)
        case .refLock: try await refLock(store)
        case .refLockRace: try await refLockRace(store)
        case .closedWriter: try await closedWriter(store)
        case .abort: try await abort(store)
        case .statuses: try await statuses(store)
        case .refNames: try await refNames(store)
        case .invalidRef: try await invalidRef(store)
        case .commitExisting: try await commitExisting(store)
        case .writerForExisting: try await writerForExisting(store)
        case .delete: try await delete(store)
        case .walk: try await walk(store)
        case .largeContent: try await largeContent(store)
        case .concurrentWriters: try await concurrentWriters(store)
        case .concurrentCommitsSameContent: try await concurrentCommitsSameContent(store)
        case .reopenSeesIngest: try await reopenSeesIngest(store)
        case .reopenAfterDroppedWriter: try await reopenAfterDroppedWriter(store)
        case .reopenSeesBlobs: try await reopenSeesBlobs(store)
        }
    }

    /// Write in uneven chunks with total and expected given up front; status and digest track every write; the
    /// commit makes the blob visible with its size; the ingest is gone afterwards.
    func writeCommitRead(_ store: any ContentStore) async throws {
        let bytes = Self.content(3 << 20 + 12345, seed: 1)
        let digest = try Self.digest(bytes)
        let before = Date()
        let writer = try await store.writer(ref: "write-1", total: Int64(bytes.count), expected: digest)
        try equal(writer.ref, "write-1", "writer ref")
        var status = try await writer.status()
        try equal(status.offset, 0, "offset of a new ingest")
        try equal(status.total, Int64(bytes.count), "total of a new ingest")
        try equal(status.expected, digest, "expected digest of a new ingest")
        try check(status.startedAt >= before.addingTimeInterval(-2), "startedAt \(status.startedAt) before the test")
        let cuts = [0, 1, 4096, 1 << 20, (1 << 20) + 7, 3 << 20, bytes.count]
        for (start, end) in zip(cuts, cuts.dropFirst()) {
            try await writer.write(Array(bytes[start..<end]))
            status = try await writer.status()
            try equal(status.offset, Int64(end), "writer offset after writing up to \(end)")
            try equal(await writer.digest(), try Self.digest(Array(bytes[0..<end])), "running digest at \(end)")
        }
        let fromStore = try await store.status("write-1")
        try equal(fromStore.offset, Int64(bytes.count), "store status offset of an open ingest")
        try equal(fromStore.total, Int64(bytes.count), "store status total of an open ingest")
        let committed = try await writer.commit(size: Int64(bytes.count), expected: digest)
        try equal(committed, digest, "committed digest")
        try await expectBlob(store, bytes)
        let info = try await store.info(digest)
        try check(info.createdAt >= before.addingTimeInterval(-2), "createdAt \(info.createdAt) before the write")
        try await expectError(.notFound, "status of a committed ingest") { try await store.status("write-1") }
        try check(try await store.statuses().isEmpty, "statuses still list the committed ingest")
        await writer.close()
    }

    /// Reads at arbitrary offsets and lengths, including past the end and zero-length reads.
    func randomAccessRead(_ store: any ContentStore) async throws {
        let bytes = Self.content(1 << 20 + 333, seed: 2)
        let digest = try await ingest(store, ref: "random-access", bytes)
        let reader = try await store.reader(digest)
        try equal(reader.size, Int64(bytes.count), "reader size")
        var generator = SplitMix(seed: 99)
        for _ in 0..<64 {
            let offset = Int(generator.next() % UInt64(bytes.count))
            let count = Int(generator.next() % 200_000)
            let part = try await reader.read(at: Int64(offset), count: count)
            let expected = Array(bytes[offset..<min(bytes.count, offset + count)])
            try check(part == expected, "read of \(count) at \(offset): \(part.count) bytes that differ")
        }
        let tail = try await reader.read(at: Int64(bytes.count - 10), count: 100)
        try check(tail == Array(bytes.suffix(10)), "read across the end gives the last 10 bytes, got \(tail.count)")
        try equal(try await reader.read(at: Int64(bytes.count), count: 10).count, 0, "bytes read at the end")
        try equal(try await reader.read(at: 5, count: 0).count, 0, "bytes of a zero-length read")
        let second = try await store.reader(digest)
        try equal(try await second.read(at: 0, count: 16), Array(bytes[0..<16]), "a second reader's first bytes")
        await second.close()
        await reader.close()
        try await expectError(.notFound, "reader of an unknown digest") {
            try await store.reader(try Self.digest([1, 2, 3]))
        }
    }

    /// The empty blob commits with sha256 of nothing and reads back empty.
    func emptyContent(_ store: any ContentStore) async throws {
        let writer = try await store.writer(ref: "empty", total: 0, expected: nil)
        let digest = try await writer.commit(size: 0, expected: nil)
        try equal(
            digest.description, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "digest of empty content")
        try equal(try await store.info(digest).size, 0, "size of the empty blob")
        try equal(try await readAll(store, digest).count, 0, "bytes read from the empty blob")
    }

    /// A wrong size fails with containerd's text and commits nothing; the ingest stays and a retry succeeds.
    func commitWrongSize(_ store: any ContentStore) async throws {
        let bytes = Self.content(100_000, seed: 3)
        let digest = try Self.digest(bytes)
        let writer = try await store.writer(ref: "wrong-size", total: 0, expected: nil)
        try await write(writer, bytes, chunk: 30_000)
        try await expectError(
            .failedPrecondition, containing: "unexpected commit size 100000, expected 100001", "commit, size + 1"
        ) { try await writer.commit(size: 100_001, expected: digest) }
        try await expectNoBlob(store, digest)
        try equal(try await store.status("wrong-size").offset, 100_000, "ingest offset after a failed commit")
        await writer.close()
        let retry = try await store.writer(ref: "wrong-size", total: 0, expected: nil)
        try equal(try await retry.status().offset, 100_000, "offset when reopening after a failed commit")
        try equal(try await retry.commit(size: 100_000, expected: digest), digest, "digest of the retried commit")
        try await expectBlob(store, bytes)
    }

    /// A wrong digest fails with containerd's text naming both digests and commits nothing.
    func commitWrongDigest(_ store: any ContentStore) async throws {
        let bytes = Self.content(70_000, seed: 4)
        let digest = try Self.digest(bytes)
        let wrong = try Self.digest(Array(bytes.dropLast()))
        let writer = try await store.writer(ref: "wrong-digest", total: 0, expected: nil)
        try await write(writer, bytes)
        try await expectError(
            .failedPrecondition, containing: "unexpected commit digest \(digest), expected \(wrong)", "commit"
        ) { try await writer.commit(size: 70_000, expected: wrong) }
        try await expectNoBlob(store, digest)
        try await expectNoBlob(store, wrong)
        try equal(try await store.status("wrong-digest").offset, 70_000, "ingest offset after a failed commit")
        await writer.close()
        try await store.abort("wrong-digest")
    }

    /// Without a digest at commit, the expected one recorded at open (or by update) is verified.
    func commitRecordedExpected(_ store: any ContentStore) async throws {
        let bytes = Self.content(50_000, seed: 5)
        let digest = try Self.digest(bytes)
        let other = try Self.digest([0])
        let writer = try await store.writer(ref: "recorded", total: 0, expected: other)
        try await write(writer, bytes)
        try await expectError(.failedPrecondition, containing: "expected \(other)", "commit against recorded") {
            try await writer.commit(size: 0, expected: nil)
        }
        try await writer.update(total: 50_000, expected: digest)
        let status = try await writer.status()
        try equal(status.expected, digest, "expected digest after update")
        try equal(status.total, 50_000, "total after update")
        try equal(try await store.status("recorded").total, 50_000, "store status total after update")
        try equal(try await writer.commit(size: 0, expected: nil), digest, "commit against the updated digest")
        try await expectBlob(store, bytes)
    }

    /// Closing a writer keeps the ingest; a new writer resumes at its offset with the running digest restored.
    func resumeAfterClose(_ store: any ContentStore) async throws {
        let bytes = Self.content(2 << 20 + 99, seed: 6)
        let digest = try Self.digest(bytes)
        let first = try await store.writer(ref: "resume", total: Int64(bytes.count), expected: digest)
        try await write(first, Array(bytes[0..<1_234_567]))
        await first.close()
        let status = try await store.status("resume")
        try equal(status.offset, 1_234_567, "offset after close")
        try equal(status.total, Int64(bytes.count), "total after close")
        let second = try await store.writer(ref: "resume", total: 0, expected: nil)
        let resumed = try await second.status()
        try equal(resumed.offset, 1_234_567, "offset of the resumed writer")
        try equal(resumed.total, Int64(bytes.count), "total kept on resume with total 0")
        try equal(resumed.expected, digest, "expected kept on resume with nil")
        try equal(await second.digest(), try Self.digest(Array(bytes[0..<1_234_567])), "digest restored on resume")
        try await write(second, Array(bytes[1_234_567...]))
        try equal(try await second.commit(size: Int64(bytes.count), expected: digest), digest, "resumed commit")
        try await expectBlob(store, bytes)
    }

    /// containerd's clients truncate to 0 to restart a write: the old bytes and digest are gone.
    func truncateAndRewrite(_ store: any ContentStore) async throws {
        let junk = Self.content(300_000, seed: 7)
        let bytes = Self.content(200_000, seed: 8)
        let writer = try await store.writer(ref: "truncate", total: 0, expected: nil)
        try await write(writer, junk)
        try await writer.truncate(0)
        try equal(try await writer.status().offset, 0, "offset after truncate(0)")
        try equal(try await store.status("truncate").offset, 0, "store status offset after truncate(0)")
        try equal(await writer.digest(), try Self.digest([]), "digest after truncate(0)")
        try await write(writer, bytes)
        let digest = try Self.digest(bytes)
        try equal(try await writer.commit(size: 200_000, expected: digest), digest, "commit after rewrite")
        try await expectBlob(store, bytes)
        try await expectNoBlob(store, try Self.digest(junk))
    }

    /// Truncating to a shorter length keeps the prefix and its digest; growing by truncate is refused.
    func truncatePartial(_ store: any ContentStore) async throws {
        let bytes = Self.content(500_000, seed: 9)
        let writer = try await store.writer(ref: "truncate-partial", total: 0, expected: nil)
        try await write(writer, bytes)
        try await writer.truncate(123_456)
        try equal(try await writer.status().offset, 123_456, "offset after truncate")
        try equal(await writer.digest(), try Self.digest(Array(bytes[0..<123_456])), "digest after truncate")
        try await expectError(.invalidArgument, "truncate beyond the offset") { try await writer.truncate(123_457) }
        try await write(writer, Array(bytes[123_456...]))
        let digest = try Self.digest(bytes)
        try equal(try await writer.commit(size: 500_000, expected: digest), digest, "commit after truncate")
    }

    /// One writer per ref: a second gets containerd's "ref <ref> locked" Unavailable until the first closes;
    /// other refs are not affected; a commit releases the lock too.
    func refLock(_ store: any ContentStore) async throws {
        let first = try await store.writer(ref: "locked-ref", total: 0, expected: nil)
        try await first.write([1, 2, 3])
        try await expectError(.unavailable, containing: "ref locked-ref locked", "second writer") {
            try await store.writer(ref: "locked-ref", total: 0, expected: nil)
        }
        let other = try await store.writer(ref: "locked-ref-2", total: 0, expected: nil)
        try equal(try await store.statuses().count, 2, "ingests while both are open")
        await first.close()
        let second = try await store.writer(ref: "locked-ref", total: 0, expected: nil)
        try equal(try await second.status().offset, 3, "offset seen by the writer taking the lock over")
        _ = try await second.commit(size: 3, expected: nil)
        let third = try await store.writer(ref: "locked-ref", total: 0, expected: nil)
        try equal(try await third.status().offset, 0, "offset of a new ingest after commit")
        await third.close()
        await other.close()
    }

    /// Writers opened concurrently on one ref: exactly one gets it, every other one is Unavailable.
    func refLockRace(_ store: any ContentStore) async throws {
        let outcomes = try await withThrowingTaskGroup(of: (any ContentWriter)?.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    do {
                        return try await store.writer(ref: "raced", total: 0, expected: nil)
                    } catch let error as BerthError where error.code == .unavailable {
                        return nil
                    }
                }
            }
            var outcomes: [(any ContentWriter)?] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        let winners = outcomes.compactMap { $0 }
        try equal(winners.count, 1, "writers that got the raced ref")
        for winner in winners { await winner.close() }
    }

    /// After close or commit a writer refuses writes and commits; close twice is harmless.
    func closedWriter(_ store: any ContentStore) async throws {
        let writer = try await store.writer(ref: "closed", total: 0, expected: nil)
        try await writer.write([9, 9, 9])
        await writer.close()
        await writer.close()
        try await expectError(.failedPrecondition, "write after close") { try await writer.write([1]) }
        try await expectError(.failedPrecondition, "commit after close") {
            try await writer.commit(size: 0, expected: nil)
        }
        let again = try await store.writer(ref: "closed", total: 0, expected: nil)
        _ = try await again.commit(size: 3, expected: nil)
        try await expectError(.failedPrecondition, "write after commit") { try await again.write([1]) }
        try await expectBlob(store, [9, 9, 9])
    }

    /// Abort removes the ingest and its data; absent refs are NotFound; the ref starts afresh afterwards.
    func abort(_ store: any ContentStore) async throws {
        let writer = try await store.writer(ref: "aborted", total: 10_000, expected: nil)
        try await writer.write(Self.content(5_000, seed: 10))
        await writer.close()
        try await store.abort("aborted")
        try await expectError(.notFound, "status after abort") { try await store.status("aborted") }
        try check(try await store.statuses().isEmpty, "statuses list an aborted ingest")
        try await expectError(.notFound, "second abort") { try await store.abort("aborted") }
        try await expectError(.notFound, "abort of an unknown ref") { try await store.abort("never-written") }
        let fresh = try await store.writer(ref: "aborted", total: 0, expected: nil)
        let status = try await fresh.status()
        try equal(status.offset, 0, "offset of a ref written again after abort")
        try equal(status.total, 0, "total of a ref written again after abort")
        await fresh.close()
    }

    /// Statuses list every ingest, open or closed, with offset, total, expected and times.
    func statuses(_ store: any ContentStore) async throws {
        let start = Date().addingTimeInterval(-2)
        let expected = try Self.digest([42])
        let open = try await store.writer(ref: "status-open", total: 100, expected: expected)
        try await open.write(Array(repeating: 1, count: 40))
        let closed = try await store.writer(ref: "status-closed", total: 0, expected: nil)
        try await closed.write(Array(repeating: 2, count: 7))
        await closed.close()
        let listed = try await store.statuses()
        try equal(listed.map(\.ref).sorted(), ["status-closed", "status-open"], "refs listed")
        for status in listed {
            let one = try await store.status(status.ref)
            try equal(one.ref, status.ref, "ref of status(\(status.ref))")
            try equal(one.offset, status.offset, "status(\(status.ref)) offset matches the listing")
            try check(status.startedAt >= start, "startedAt of \(status.ref) is \(status.startedAt), before the test")
            try check(status.updatedAt >= status.startedAt, "updatedAt of \(status.ref) before its startedAt")
        }
        let openStatus = try await store.status("status-open")
        try equal(openStatus.offset, 40, "offset of the open ingest")
        try equal(openStatus.total, 100, "total of the open ingest")
        try equal(openStatus.expected, expected, "expected digest of the open ingest")
        let closedStatus = try await store.status("status-closed")
        try equal(closedStatus.offset, 7, "offset of the closed ingest")
        try equal(closedStatus.total, 0, "total of an ingest opened without one")
        try equal(closedStatus.expected, Digest?.none, "expected of an ingest opened without one")
        try await expectError(.notFound, "status of an unknown ref") { try await store.status("no-such-ref") }
        await open.close()
    }

    /// Any non-empty string is a ref (containerd's clients use `layer-sha256:…`, paths, unicode).
    func refNames(_ store: any ContentStore) async throws {
        let refs = [
            "layer-sha256:0123", "a/b/../../c", ".", "..", "with space", "ünïcødé-📦", "tab\tand\nnewline",
            String(repeating: "long", count: 300),
        ]
        for (index, ref) in refs.enumerated() {
            let writer = try await store.writer(ref: ref, total: 0, expected: nil)
            try await writer.write(Array(repeating: UInt8(index), count: index + 1))
            await writer.close()
        }
        let listed = try await store.statuses()
        try equal(Set(listed.map(\.ref)), Set(refs), "refs listed")
        for (index, ref) in refs.enumerated() {
            try equal(try await store.status(ref).offset, Int64(index + 1), "offset of ref \(ref.debugDescription)")
            try await store.abort(ref)
        }
        try check(try await store.statuses().isEmpty, "statuses after aborting every ref")
    }

    /// The empty ref is InvalidArgument everywhere.
    func invalidRef(_ store: any ContentStore) async throws {
        try await expectError(.invalidArgument, "writer with empty ref") {
            try await store.writer(ref: "", total: 0, expected: nil)
        }
        try await expectError(.invalidArgument, "status of empty ref") { try await store.status("") }
        try await expectError(.invalidArgument, "abort of empty ref") { try await store.abort("") }
    }

    /// Committing content that is already there is AlreadyExists ("content sha256:…: already exists"), and the
    /// second ingest is gone; the blob is untouched.
    func commitExisting(_ store: any ContentStore) async throws {
        let bytes = Self.content(10_000, seed: 11)
        let digest = try await ingest(store, ref: "existing-1", bytes)
        let writer = try await store.writer(ref: "existing-2", total: 0, expected: nil)
        try await write(writer, bytes)
        try await expectError(.alreadyExists, containing: "content \(digest): already exists", "second commit") {
            try await writer.commit(size: 10_000, expected: digest)
        }
        try await expectError(.notFound, "status of the ingest after AlreadyExists") {
            try await store.status("existing-2")
        }
        try await expectBlob(store, bytes)
        try equal(try await store.walk().count, 1, "blobs after a duplicate commit")
    }

    /// Opening a writer that expects an existing digest is AlreadyExists at once (as containerd's local store).
    func writerForExisting(_ store: any ContentStore) async throws {
        let bytes = Self.content(1_000, seed: 12)
        let digest = try await ingest(store, ref: "have", bytes)
        try await expectError(.alreadyExists, containing: "content \(digest)", "writer expecting existing") {
            try await store.writer(ref: "have-again", total: 1_000, expected: digest)
        }
        try await expectError(.notFound, "status after AlreadyExists at open") { try await store.status("have-again") }
        let writer = try await store.writer(ref: "have-again", total: 0, expected: nil)
        await writer.close()
    }

    /// Delete removes a blob (info, reader and walk stop seeing it); deleting again is NotFound.
    func delete(_ store: any ContentStore) async throws {
        let keep = Self.content(2_000, seed: 13)
        let drop = Self.content(3_000, seed: 14)
        try await ingest(store, ref: "keep", keep)
        let dropped = try await ingest(store, ref: "drop", drop)
        try await store.delete(dropped)
        try await expectNoBlob(store, dropped)
        try await expectError(.notFound, "reader of a deleted blob") { try await store.reader(dropped) }
        try await expectError(.notFound, "second delete") { try await store.delete(dropped) }
        try await expectBlob(store, keep)
        try await ingest(store, ref: "drop-again", drop)
        try await expectBlob(store, drop)
    }

    /// Walk lists exactly the committed blobs with their sizes, not ingests.
    func walk(_ store: any ContentStore) async throws {
        try equal(try await store.walk().count, 0, "blobs in a new store")
        var expected: [Digest: Int64] = [:]
        for index in 0..<12 {
            let bytes = Self.content(index * 997, seed: 100 + UInt64(index))
            expected[try await ingest(store, ref: "walk-\(index)", bytes)] = Int64(bytes.count)
        }
        let pending = try await store.writer(ref: "walk-pending", total: 0, expected: nil)
        try await pending.write([1, 2, 3])
        let infos = try await store.walk()
        try equal(infos.count, expected.count, "number of blobs walked")
        for info in infos {
            try equal(info.size, expected[info.digest] ?? -1, "size walked for \(info.digest)")
            try check(info.updatedAt.timeIntervalSince1970 > 0, "updatedAt of \(info.digest) unset")
        }
        await pending.close()
    }

    /// 64 MiB of random content in 1 MiB writes plus an odd tail, read back whole in 4 MiB reads.
    func largeContent(_ store: any ContentStore) async throws {
        let bytes = Self.content(64 << 20 + 4097, seed: 15)
        let digest = try await ingest(store, ref: "large", bytes)
        let read = try await readAll(store, digest, chunk: 4 << 20)
        try equal(read.count, bytes.count, "bytes read back")
        try equal(try Self.digest(read), digest, "digest of what was read back")
    }

    /// Writers on different refs run concurrently without interfering.
    func concurrentWriters(_ store: any ContentStore) async throws {
        let contents = (0..<8).map { Self.content(2 << 20 + $0 * 1000, seed: 200 + UInt64($0)) }
        let digests = try await withThrowingTaskGroup(of: Digest.self) { group in
            for (index, bytes) in contents.enumerated() {
                group.addTask {
                    let expected = try Self.digest(bytes)
                    let writer = try await store.writer(ref: "concurrent-\(index)", total: 0, expected: nil)
                    try await write(writer, bytes, chunk: 64 << 10)
                    return try await writer.commit(size: Int64(bytes.count), expected: expected)
                }
            }
            var digests: [Digest] = []
            for try await digest in group { digests.append(digest) }
            return digests
        }
        try equal(Set(digests), Set(try contents.map { try Self.digest($0) }), "digests committed concurrently")
        for bytes in contents { try await expectBlob(store, bytes) }
        try check(try await store.statuses().isEmpty, "ingests left after concurrent commits")
    }

    /// The same content committed concurrently under several refs: exactly one wins, the rest are AlreadyExists.
    func concurrentCommitsSameContent(_ store: any ContentStore) async throws {
        let bytes = Self.content(1 << 20, seed: 16)
        let outcomes = try await withThrowingTaskGroup(of: BerthError.Code?.self) { group in
            for index in 0..<6 {
                group.addTask {
                    let writer = try await store.writer(ref: "same-\(index)", total: 0, expected: nil)
                    try await write(writer, bytes, chunk: 100_000)
                    do {
                        _ = try await writer.commit(size: Int64(bytes.count), expected: nil)
                        return nil
                    } catch let error as BerthError {
                        return error.code
                    }
                }
            }
            var outcomes: [BerthError.Code?] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        try equal(outcomes.filter { $0 == nil }.count, 1, "successful commits of the same content")
        try equal(outcomes.filter { $0 == .alreadyExists }.count, 5, "AlreadyExists among the concurrent commits")
        try await expectBlob(store, bytes)
        try check(try await store.statuses().isEmpty, "ingests left after concurrent commits")
    }

    /// A new store instance on the same directory sees a closed ingest with its offset, total and expected digest,
    /// and can finish the write.
    func reopenSeesIngest(_ store: any ContentStore) async throws {
        let bytes = Self.content(3 << 20, seed: 17)
        let digest = try Self.digest(bytes)
        let writer = try await store.writer(ref: "restart", total: Int64(bytes.count), expected: digest)
        try await write(writer, Array(bytes[0..<(1 << 20) + 5]))
        await writer.close()
        let reopened = try await open(directory)
        let status = try await reopened.status("restart")
        try equal(status.offset, (1 << 20) + 5, "offset after reopen")
        try equal(status.total, Int64(bytes.count), "total after reopen")
        try equal(status.expected, digest, "expected after reopen")
        try equal(try await reopened.statuses().map(\.ref), ["restart"], "statuses after reopen")
        let resumed = try await reopened.writer(ref: "restart", total: 0, expected: nil)
        try await write(resumed, Array(bytes[((1 << 20) + 5)...]))
        try equal(try await resumed.commit(size: 0, expected: nil), digest, "commit after reopen")
        try await expectBlob(reopened, bytes)
    }

    /// A writer dropped without close (a cancelled client, or the nearest an in-process test gets to a crash)
    /// leaves an ingest a new store instance resumes with the digest of the bytes on disk.
    func reopenAfterDroppedWriter(_ store: any ContentStore) async throws {
        let bytes = Self.content(2 << 20 + 1, seed: 18)
        let digest = try Self.digest(bytes)
        let split = 777_777
        try await {
            let writer = try await store.writer(ref: "dropped", total: 0, expected: nil)
            try await write(writer, Array(bytes[0..<split]), chunk: 100_000)
        }()
        let reopened = try await open(directory)
        try equal(try await reopened.status("dropped").offset, Int64(split), "offset after the writer was dropped")
        let resumed = try await reopened.writer(ref: "dropped", total: 0, expected: nil)
        try equal(await resumed.digest(), try Self.digest(Array(bytes[0..<split])), "digest restored from disk")
        try await write(resumed, Array(bytes[split...]))
        try equal(try await resumed.commit(size: Int64(bytes.count), expected: digest), digest, "resumed commit")
        try await expectBlob(reopened, bytes)
    }

    /// Committed blobs survive a reopen with the same info.
    func reopenSeesBlobs(_ store: any ContentStore) async throws {
        let bytes = Self.content(123_456, seed: 19)
        let digest = try await ingest(store, ref: "persist", bytes)
        let before = try await store.info(digest)
        let reopened = try await open(directory)
        let after = try await reopened.info(digest)
        try equal(after.size, before.size, "size after reopen")
        try equal(after.createdAt, before.createdAt, "createdAt after reopen")
        try await expectBlob(reopened, bytes)
        try equal(try await reopened.walk().map(\.digest), [digest], "walk after reopen")
    }
}

/// A tiny deterministic generator for offsets and counts.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
