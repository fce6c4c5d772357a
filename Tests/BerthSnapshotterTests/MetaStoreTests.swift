import BerthCore
import BerthSnapshotStorage
import Foundation
import Testing

/// The storage layer on its own: ids, parent chains, kinds, labels, usage, rollback and errors (containerd's
/// snapshots/storage metastore tests).
@Suite("SnapshotMetaStore")
struct SnapshotMetaStoreTests {
    func withStore<T>(_ body: (SnapshotMetaStore) async throws -> T) async throws -> T {
        let scratch = try SnapshotScratch()
        let store = try SnapshotMetaStore(path: scratch.path + "/metadata.db")
        defer { store.close() }
        return try await body(store)
    }

    @Test func chainsIdsAndKinds() async throws {
        try await withStore { store in
            let chain = try await store.write { tx throws(BerthError) in
                let a = try tx.createSnapshot(kind: .active, key: "a", parent: "", labels: ["x": "1"])
                try tx.commitActive(key: "a", name: "A", usage: SnapshotUsage(size: 10, inodes: 2), labels: [:])
                let b = try tx.createSnapshot(kind: .active, key: "b", parent: "A", labels: [:])
                try tx.commitActive(key: "b", name: "B", usage: SnapshotUsage(), labels: ["y": "2"])
                let view = try tx.createSnapshot(kind: .view, key: "v", parent: "B", labels: [:])
                return [a, b, view]
            }
            #expect(chain[0].parentIDs.isEmpty)
            #expect(chain[1].parentIDs == [chain[0].id])
            #expect(chain[2].parentIDs == [chain[1].id, chain[0].id], "nearest parent first")
            #expect(Set(chain.map(\.id)).count == 3)
            let (id, info, usage) = try await store.read { tx throws(BerthError) in try tx.getInfo("A") }
            #expect(id == chain[0].id)
            #expect(info.kind == .committed && info.labels.isEmpty, "commit replaces labels")
            #expect(info.createdAt == info.updatedAt)
            #expect(usage == SnapshotUsage(size: 10, inodes: 2))
            let ids = try await store.read { tx throws(BerthError) in try tx.idMap() }
            #expect(ids == [chain[0].id: "A", chain[1].id: "B", chain[2].id: "v"])
        }
    }

    @Test func errorsUseContainerdsCodes() async throws {
        try await withStore { store in
            try await store.write { tx throws(BerthError) in
                _ = try tx.createSnapshot(kind: .active, key: "a", parent: "", labels: [:])
                _ = try tx.createSnapshot(kind: .active, key: "p", parent: "", labels: [:])
                try tx.commitActive(key: "p", name: "P", usage: SnapshotUsage(), labels: [:])
                _ = try tx.createSnapshot(kind: .view, key: "child", parent: "P", labels: [:])
            }
            func code(_ body: @escaping @Sendable (SnapshotTransaction) throws(BerthError) -> Void) async -> BerthError.Code? {
                do {
                    try await store.write(body)
                    return nil
                } catch { return error.code }
            }
            #expect(await code { tx throws(BerthError) in _ = try tx.createSnapshot(kind: .active, key: "a", parent: "", labels: [:]) } == .alreadyExists)
            #expect(await code { tx throws(BerthError) in _ = try tx.createSnapshot(kind: .active, key: "n", parent: "a", labels: [:]) } == .invalidArgument)
            #expect(await code { tx throws(BerthError) in _ = try tx.createSnapshot(kind: .active, key: "n", parent: "zz", labels: [:]) } == .notFound)
            #expect(await code { tx throws(BerthError) in _ = try tx.createSnapshot(kind: .committed, key: "n", parent: "", labels: [:]) } == .invalidArgument)
            #expect(await code { tx throws(BerthError) in try tx.commitActive(key: "P", name: "Q", usage: SnapshotUsage(), labels: [:]) } == .failedPrecondition)
            #expect(await code { tx throws(BerthError) in try tx.commitActive(key: "a", name: "P", usage: SnapshotUsage(), labels: [:]) } == .alreadyExists)
            #expect(await code { tx throws(BerthError) in try tx.remove("P") } == .failedPrecondition)
            #expect(await code { tx throws(BerthError) in try tx.remove("zz") } == .notFound)
            #expect(await code { tx throws(BerthError) in try tx.updateInfo(SnapshotInfo(kind: .active, name: "a"), paths: ["parent"]) } == .invalidArgument)
        }
    }

    /// A lookup that throws hands its reader back outside any transaction (GRDB would stop the process otherwise):
    /// the next lookups, on the same reader (the first free one), start their own and see every later commit.
    @Test func failedLookupLeavesNoTransactionOpen() async throws {
        try await withStore { store in
            for i in 0..<3 {
                #expect(throws: BerthError.self) {
                    try store.readNow { tx throws(BerthError) in _ = try tx.getInfo("missing") }
                }
                try await store.write { tx throws(BerthError) in
                    _ = try tx.createSnapshot(kind: .active, key: "k\(i)", parent: "", labels: [:])
                }
                let keys = try store.readNow { tx throws(BerthError) in try tx.walk(.all).map(\.name) }
                #expect(Set(keys) == Set((0...i).map { "k\($0)" }))
            }
        }
    }

    /// A closure that throws after changing rows leaves nothing behind.
    @Test func failedTransactionRollsBack() async throws {
        try await withStore { store in
            do {
                try await store.write { tx throws(BerthError) in
                    _ = try tx.createSnapshot(kind: .active, key: "gone", parent: "", labels: ["l": "v"])
                    throw BerthError.internalError("fail after insert")
                }
                Issue.record("the write should have thrown")
            } catch {}
            let ids = try await store.read { tx throws(BerthError) in try tx.idMap() }
            #expect(ids.isEmpty)
            let walked = try await store.read { tx throws(BerthError) in try tx.walk(.all) }
            #expect(walked.isEmpty)
        }
    }

    /// Labels: empty values dropped, `labels.KEY` paths set or delete one label, `labels` replaces all.
    @Test func labelUpdates() async throws {
        try await withStore { store in
            let info = try await store.write { tx throws(BerthError) in
                _ = try tx.createSnapshot(kind: .active, key: "a", parent: "", labels: ["a": "1", "b": "2", "e": ""])
                var info = try tx.getInfo("a").info
                info.labels = ["a": "changed", "c": "3"]
                return try tx.updateInfo(info, paths: ["labels.a", "labels.b"])
            }
            #expect(info.labels == ["a": "changed"])
            let replaced = try await store.write { tx throws(BerthError) in
                try tx.updateInfo(SnapshotInfo(kind: .active, name: "a", labels: ["z": "9"]), paths: [])
            }
            #expect(replaced.labels == ["z": "9"])
            #expect(replaced.updatedAt >= replaced.createdAt)
        }
    }

    @Test func reopenedStoreKeepsRowsAndNeverReusesIds() async throws {
        let scratch = try SnapshotScratch()
        let path = scratch.path + "/metadata.db"
        var store = try SnapshotMetaStore(path: path)
        let first = try await store.write { tx throws(BerthError) in
            try tx.createSnapshot(kind: .active, key: "a", parent: "", labels: ["k": "v"])
        }
        try await store.write { tx throws(BerthError) in _ = try tx.remove("a") }
        _ = try await store.write { tx throws(BerthError) in
            try tx.createSnapshot(kind: .active, key: "b", parent: "", labels: [:])
        }
        store.close()
        store = try SnapshotMetaStore(path: path)
        defer { store.close() }
        let next = try await store.write { tx throws(BerthError) in
            try tx.createSnapshot(kind: .active, key: "c", parent: "", labels: [:])
        }
        #expect(Int(next.id) ?? 0 > (Int(first.id) ?? 0) + 1)
        let walked = try await store.read { tx throws(BerthError) in try tx.walk(.all) }
        #expect(walked.map(\.name) == ["b", "c"])
    }

    /// The `-wal` file is padded to its working size and kept across closes; the padding never reads as data: a
    /// copy of the files taken while frames were still only in the log (as after a crash) opens with every row.
    @Test func paddedWriteAheadLogRecovers() async throws {
        let scratch = try SnapshotScratch()
        let path = scratch.path + "/metadata.db"
        let store = try SnapshotMetaStore(path: path)
        func walSize() -> Int {
            var st = stat()
            return stat(path + "-wal", &st) == 0 ? Int(st.st_size) : -1
        }
        let padded = walSize()
        #expect(padded >= 1000 * (4096 + 24))
        for i in 0..<20 {
            _ = try await store.write { tx throws(BerthError) in
                try tx.createSnapshot(kind: .active, key: "k\(i)", parent: "", labels: ["n": "\(i)"])
            }
        }
        #expect(walSize() == padded, "commits overwrite the padding instead of growing the file")
        try FileManager.default.createDirectory(atPath: scratch.path + "/copy", withIntermediateDirectories: false)
        for suffix in ["", "-wal"] {
            try FileManager.default.copyItem(atPath: path + suffix, toPath: scratch.path + "/copy/metadata.db" + suffix)
        }
        store.close()
        #expect(walSize() == padded, "the log outlives the last connection")
        let copy = scratch.path + "/copy/metadata.db"
        for reopened in [try SnapshotMetaStore(path: copy), try SnapshotMetaStore(path: path)] {
            let walked = try await reopened.read { tx throws(BerthError) in try tx.walk(.all) }
            #expect(walked.count == 20)
            #expect(walked.first { $0.name == "k19" }?.labels == ["n": "19"])
            reopened.close()
        }
    }
}
