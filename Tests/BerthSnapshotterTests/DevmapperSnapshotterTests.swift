import BerthCore
import Foundation
import Logging
import Testing

@testable import BerthDevmapperSnapshotter

/// The devmapper snapshotter's state machine and the exact commands it issues, against `SimulatedThinPool`
/// (this kernel has no device-mapper), with its real SQLite stores.
@Suite struct DevmapperSnapshotterTests {
    func withSnapshotter(
        asyncRemove: Bool = false, fsType: FileSystemType = .ext4,
        _ body: (DevmapperSnapshotter, SimulatedThinPool, DevmapperSettings) async throws -> Void
    ) async throws {
        let dir = "/var/tmp/berth-dm-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = DevmapperSettings(
            rootPath: dir, poolName: "pool", baseImageSizeBytes: 10 << 30, asyncRemove: asyncRemove,
            discardBlocks: false, fsType: fsType, fsOptions: "")
        let sim = SimulatedThinPool()
        let s = try DevmapperSnapshotter(settings: settings, executor: sim, retryDelay: .zero)
        do {
            try await body(s, sim, settings)
        } catch {
            await s.close()
            throw error
        }
        await s.close()
    }

    func state(_ s: DevmapperSnapshotter, _ name: String) throws -> DeviceState { try s.pool.metadata.device(name).state }

    @Test func openChecksDmsetupAndThePool() async throws {
        try await withSnapshotter { _, sim, _ in
            #expect(sim.lines == ["dmsetup version", "dmsetup " + DMSetup.info("/dev/mapper/pool").joined(separator: " ")])
        }
    }

    @Test func prepareCommitChildViewAndRemoveIssueContainerdsCommands() async throws {
        try await withSnapshotter { s, sim, _ in
            sim.clear()
            let mounts = try await s.prepare("a", parent: "", labels: ["l": "1"])
            #expect(mounts == [Mount(type: "ext4", source: "/dev/mapper/pool-snap-1")])
            let prepared = sim.lines
            #expect(prepared.contains("dmsetup message pool 0 create_thin 1"))
            #expect(prepared.contains("dmsetup create pool-snap-1 --table 0 20971520 thin /dev/mapper/pool 1"))
            #expect(prepared.contains("mkfs.ext4 -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/pool-snap-1"))
            let created = try #require(prepared.firstIndex(of: "dmsetup message pool 0 create_thin 1"))
            let activated = try #require(
                prepared.firstIndex(of: "dmsetup create pool-snap-1 --table 0 20971520 thin /dev/mapper/pool 1"))
            #expect(created < activated)
            // lost+found removal: a temporary mount, then its unmount.
            #expect(prepared.dropLast().last?.hasPrefix("mount -t ext4 /dev/mapper/pool-snap-1 /") == true)
            #expect(prepared.last?.hasPrefix("umount /") == true)
            #expect(try state(s, "pool-snap-1") == .activated)
            #expect(try await s.stat("a").labels == ["l": "1", DevmapperSnapshotter.fsTypeLabel: "ext4"])
            #expect(try await s.mounts("a") == mounts)

            sim.setMapped(id: 1, sectors: 2048)
            #expect(try await s.usage("a") == SnapshotUsage(size: 2048 * 512))
            sim.clear()
            try await s.commit("base", key: "a", labels: [:])
            #expect(sim.lines.filter { !$0.hasPrefix("dmsetup info") } == [
                "dmsetup status pool-snap-1", "dmsetup suspend pool-snap-1", "dmsetup resume pool-snap-1",
                "dmsetup remove --retry --deferred /dev/mapper/pool-snap-1",
            ])
            #expect(try state(s, "pool-snap-1") == .deactivated)
            #expect(try await s.stat("base").labels == [DevmapperSnapshotter.fsTypeLabel: "ext4"])
            #expect(try await s.usage("base") == SnapshotUsage(size: 2048 * 512))

            sim.clear()
            let child = try await s.prepare("b", parent: "base", labels: [:])
            #expect(child == [Mount(type: "ext4", source: "/dev/mapper/pool-snap-2")])
            #expect(sim.lines.filter { !$0.hasPrefix("dmsetup info") } == [
                "dmsetup message pool 0 create_snap 2 1",
                "dmsetup create pool-snap-2 --table 0 20971520 thin /dev/mapper/pool 2",
            ])
            sim.setMapped(id: 2, sectors: 2048 + 100)
            #expect(try await s.usage("b") == SnapshotUsage(size: 100 * 512))
            let view = try await s.view("v", parent: "base", labels: [:])
            #expect(view == [Mount(type: "ext4", source: "/dev/mapper/pool-snap-3", options: ["ro"])])
            #expect(try await s.usage("v") == SnapshotUsage())
            await btrfsExpectCode(.failedPrecondition) { try await s.remove("base") }
            await btrfsExpectCode(.failedPrecondition) { try await s.mounts("base") }
            await btrfsExpectCode(.failedPrecondition) { try await s.commit("x", key: "base", labels: [:]) }

            sim.clear()
            try await s.remove("b")
            #expect(sim.lines.filter { !$0.hasPrefix("dmsetup info") } == [
                "dmsetup remove --retry --force /dev/mapper/pool-snap-2", "dmsetup message pool 0 delete 2",
            ])
            #expect(throws: BerthError.self) { try s.pool.metadata.device("pool-snap-2") }
            #expect(!sim.thinIDs.contains(2))
            // The freed thin id 2 goes to the next device.
            _ = try await s.prepare("c", parent: "base", labels: [:])
            #expect(try s.pool.metadata.device("pool-snap-4").deviceID == 2)
            #expect(try await s.walk(Filter.all).map(\.name) == ["base", "c", "v"])
        }
    }

    @Test func asyncRemoveDefersTheDeviceToCleanup() async throws {
        try await withSnapshotter(asyncRemove: true) { s, sim, _ in
            _ = try await s.prepare("a", parent: "", labels: [:])
            sim.clear()
            try await s.remove("a")
            #expect(sim.lines.isEmpty)
            #expect(try state(s, "pool-snap-1") == .removed)
            await btrfsExpectCode(.notFound) { try await s.stat("a") }
            try await s.cleanup()
            #expect(sim.lines.filter { !$0.hasPrefix("dmsetup info") } == [
                "dmsetup remove --retry --force /dev/mapper/pool-snap-1", "dmsetup message pool 0 delete 1",
            ])
            #expect(try s.pool.metadata.devices().isEmpty)
        }
    }

    @Test func failedCreateRollsBackTheSnapshotAndReservesTheId() async throws {
        try await withSnapshotter { s, sim, _ in
            sim.fail("create_thin", "device-mapper: message ioctl on pool  failed: File exists\nCommand failed.\n")
            await btrfsExpectCode(.alreadyExists) { try await s.prepare("a", parent: "", labels: [:]) }
            await btrfsExpectCode(.notFound) { try await s.stat("a") }
            #expect(try state(s, "pool-snap-1") == .faulty)
            #expect(try s.pool.metadata.faultyIDs() == [1])
            // The key is free again; the rolled-back snapshot id comes back, its faulty device gets a new thin id.
            _ = try await s.prepare("a", parent: "", labels: [:])
            #expect(try s.pool.metadata.device("pool-snap-1") == DeviceInfo(
                deviceID: 2, size: 10 << 30, name: "pool-snap-1", state: .activated))
        }
    }

    @Test func failedActivationDeletesTheThinDeviceAndFreesItsId() async throws {
        try await withSnapshotter { s, sim, _ in
            sim.fail("dmsetup create", "device-mapper: reload ioctl on pool-snap-1  failed: Invalid argument\nCommand failed.\n")
            await btrfsExpectCode(.internalError) { try await s.prepare("a", parent: "", labels: [:]) }
            #expect(sim.lines.contains("dmsetup message pool 0 delete 1"))
            #expect(try s.pool.metadata.devices().isEmpty)
            #expect(sim.thinIDs.isEmpty)
            _ = try await s.prepare("b", parent: "", labels: [:])
            #expect(try s.pool.metadata.device("pool-snap-1").deviceID == 1)
        }
    }

    @Test func failedMkfsRemovesTheDevice() async throws {
        try await withSnapshotter(fsType: .xfs) { s, sim, _ in
            sim.fail("mkfs.xfs", "mkfs.xfs: cannot open /dev/mapper/pool-snap-1\n")
            await btrfsExpectCode(.internalError) { try await s.prepare("a", parent: "", labels: [:]) }
            #expect(try s.pool.metadata.devices().isEmpty && sim.activeNames.isEmpty && sim.thinIDs.isEmpty)
            let mounts = try await s.prepare("a", parent: "", labels: [:])
            #expect(mounts == [Mount(type: "xfs", source: "/dev/mapper/pool-snap-1", options: ["nouuid"])])
            #expect(sim.lines.contains("mkfs.xfs /dev/mapper/pool-snap-1"))
        }
    }

    @Test func busyDeletesAreRetried() async throws {
        try await withSnapshotter { s, sim, _ in
            _ = try await s.prepare("a", parent: "", labels: [:])
            for _ in 0..<2 {
                sim.fail("delete 1", "device-mapper: message ioctl on pool  failed: Device or resource busy\nCommand failed.\n")
            }
            try await s.remove("a")
            #expect(sim.lines.filter { $0 == "dmsetup message pool 0 delete 1" }.count == 3)
        }
    }

    @Test func snapshotOfAnActiveDeviceSuspendsItAround() async throws {
        try await withSnapshotter { s, sim, _ in
            _ = try await s.prepare("a", parent: "", labels: [:])
            sim.clear()
            try s.pool.createSnapshotDevice(parent: "pool-snap-1", name: "manual", size: 1 << 20)
            #expect(sim.lines.filter { !$0.hasPrefix("dmsetup info") } == [
                "dmsetup suspend pool-snap-1", "dmsetup message pool 0 create_snap 2 1",
                "dmsetup create manual --table 0 2048 thin /dev/mapper/pool 2", "dmsetup resume pool-snap-1",
            ])
            #expect(try state(s, "pool-snap-1") == .resumed)
        }
    }

    /// A restart after a crash: devices half way through an operation become faulty, activated devices whose
    /// mapping vanished (a reboot) are activated again, and the snapshots are all still there.
    @Test func reopenRepairsDeviceStates() async throws {
        let dir = "/var/tmp/berth-dm-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = DevmapperSettings(
            rootPath: dir, poolName: "pool", baseImageSizeBytes: 1 << 30, asyncRemove: false, discardBlocks: false,
            fsType: .ext4, fsOptions: "")
        let sim = SimulatedThinPool()
        var s = try DevmapperSnapshotter(settings: settings, executor: sim, retryDelay: .zero)
        _ = try await s.prepare("a", parent: "", labels: [:])
        try s.pool.metadata.addDevice(DeviceInfo(size: 1, name: "half"))
        try s.pool.metadata.transition("half", to: .creating)
        await s.close()
        sim.deactivateAll()
        sim.clear()

        s = try DevmapperSnapshotter(settings: settings, executor: sim, retryDelay: .zero)
        #expect(try state(s, "half") == .faulty)
        #expect(try state(s, "pool-snap-1") == .activated)
        #expect(sim.lines.contains("dmsetup create pool-snap-1 --table 0 2097152 thin /dev/mapper/pool 1"))
        #expect(sim.activeNames == ["pool-snap-1"])
        #expect(try await s.stat("a").kind == .active)
        await s.close()
    }

    @Test func missingPoolFailsToOpen() throws {
        let dir = "/var/tmp/berth-dm-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settings = DevmapperSettings(
            rootPath: dir, poolName: "other", baseImageSizeBytes: 1 << 30, asyncRemove: false, discardBlocks: false,
            fsType: .ext4, fsOptions: "")
        let error = try #require(throws: BerthError.self) {
            try DevmapperSnapshotter(settings: settings, executor: SimulatedThinPool(pool: "pool"), retryDelay: .zero)
        }
        #expect(error.message.hasPrefix("failed to query pool \"/dev/mapper/other\""))
    }
}
