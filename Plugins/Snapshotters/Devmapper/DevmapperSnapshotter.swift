import BerthCore
import BerthSnapshotStorage
import Foundation
import Logging

/// containerd's devmapper snapshotter (snapshots/devmapper/snapshotter.go): every snapshot is a thin device
/// `<pool>-snap-<id>` in an existing thin-pool. A snapshot without parent is a new thin device of
/// `base_image_size` with a fresh file system; a child is a thin snapshot of its parent's device. Commit records
/// the device's usage and deactivates it; remove deletes it (or, with `async_remove`, marks it for `cleanup`).
/// Mounts are the block device with the file system type (`ro` for views, `nouuid` for xfs).
public final class DevmapperSnapshotter: Snapshotter, Closable {
    /// The label carrying a snapshot's file system type, inherited by its children.
    public static let fsTypeLabel = "containerd.io/snapshot/devmapper/fstype"

    public let settings: DevmapperSettings
    let store: SnapshotMetaStore
    public let pool: PoolDevice
    let logger: Logger

    /// Opens the metadata under `root_path`, checks dmsetup and the pool, and repairs device states left by a
    /// crash. Throws when the pool cannot be used.
    public init(
        settings: DevmapperSettings, executor: any DeviceCommandExecutor = SystemCommandExecutor(),
        logger: Logger = Logger(label: "berth.snapshotter.devmapper"), poolMetadataMaxID: UInt32 = maxDeviceID,
        retryDelay: Duration = .milliseconds(100)
    ) throws(BerthError) {
        try FileSystem.makeDirectories(settings.rootPath, mode: 0o750)
        self.settings = settings
        self.logger = logger
        store = try SnapshotMetaStore(path: settings.rootPath + "/metadata.db")
        let metadata = try PoolMetadata(
            path: settings.rootPath + "/" + settings.poolName + ".db", maxID: poolMetadataMaxID)
        pool = PoolDevice(
            poolName: settings.poolName, metadata: metadata, discardBlocks: settings.discardBlocks, executor: executor,
            logger: logger, retryDelay: retryDelay)
        do throws(BerthError) {
            try pool.checkPool()
            try pool.ensureDeviceStates()
        } catch {
            store.close()
            metadata.close()
            throw error
        }
    }

    /// containerd's device naming: the pool name as prefix avoids collisions between pools.
    public func deviceName(_ id: String) -> String { "\(settings.poolName)-snap-\(id)" }

    public func stat(_ key: String) async throws(BerthError) -> SnapshotInfo {
        try await store.read { tx throws(BerthError) in try tx.getInfo(key).info }
    }

    public func update(_ info: SnapshotInfo, paths: [String]) async throws(BerthError) -> SnapshotInfo {
        try await store.write { tx throws(BerthError) in try tx.updateInfo(info, paths: paths) }
    }

    /// Bytes mapped by the snapshot's device minus its parent's (thin devices share the parent's blocks); the
    /// committed value for committed snapshots, measured now for active ones.
    public func usage(_ key: String) async throws(BerthError) -> SnapshotUsage {
        try await store.read { tx throws(BerthError) in
            let (id, info, stored) = try tx.getInfo(key)
            var usage = stored
            if info.kind == .active { usage.size = try self.pool.usage(self.deviceName(id)) }
            // A view owns nothing (containerd would report minus its parent's size here).
            if info.kind != .view && !info.parent.isEmpty { usage.size -= try tx.getInfo(info.parent).usage.size }
            return usage
        }
    }

    public func mounts(_ key: String) async throws(BerthError) -> [Mount] {
        let (snapshot, info) = try await store.read { tx throws(BerthError) in
            (try tx.getSnapshot(key), try tx.getInfo(key).info)
        }
        guard snapshot.kind != .committed else {
            throw .failedPrecondition("snapshot \(key) is committed: only active and view snapshots have mounts")
        }
        return buildMounts(snapshot, fsType: info.labels[Self.fsTypeLabel] ?? "")
    }

    func buildMounts(_ snapshot: StoredSnapshot, fsType: String) -> [Mount] {
        var options: [String] = []
        if fsType == FileSystemType.xfs.rawValue { options.append("nouuid") }
        if snapshot.kind != .active { options.append("ro") }
        return [Mount(type: fsType, source: DMSetup.fullPath(deviceName(snapshot.id)), options: options)]
    }

    public func prepare(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await createSnapshot(.active, key: key, parent: parent, labels: labels)
    }

    public func view(_ key: String, parent: String, labels: [String: String]) async throws(BerthError) -> [Mount] {
        try await createSnapshot(.view, key: key, parent: parent, labels: labels)
    }

    private func createSnapshot(_ kind: SnapshotKind, key: String, parent: String, labels: [String: String])
        async throws(BerthError) -> [Mount]
    {
        let mounts = try await store.write { tx throws(BerthError) in
            // A base snapshot gets the configured file system; children inherit their parent's (ext4 when a
            // parent predates the label).
            var fsType = self.settings.fsType.rawValue
            if !parent.isEmpty {
                fsType = try tx.getInfo(parent).info.labels[Self.fsTypeLabel] ?? FileSystemType.ext4.rawValue
            }
            var labels = labels
            labels[Self.fsTypeLabel] = fsType
            let snapshot = try tx.createSnapshot(kind: kind, key: key, parent: parent, labels: labels)
            let device = self.deviceName(snapshot.id)
            if let parentID = snapshot.parentIDs.first {
                try self.pool.createSnapshotDevice(
                    parent: self.deviceName(parentID), name: device, size: self.settings.baseImageSizeBytes)
            } else {
                try self.pool.createThinDevice(device, size: self.settings.baseImageSizeBytes)
                do throws(BerthError) {
                    try self.makeFileSystem(DMSetup.fullPath(device))
                } catch {
                    try? self.pool.removeDevice(device)
                    throw error
                }
            }
            return self.buildMounts(snapshot, fsType: fsType)
        }
        if parent.isEmpty { removeLostFound(mounts) }
        return mounts
    }

    /// The mkfs command line for a new base device (containerd's options: ext4 without lazy init so the
    /// first writes are not slowed by background initialisation).
    public static func mkfsCommand(_ fsType: FileSystemType, fsOptions: String, device: String) -> (String, [String]) {
        switch fsType {
        case .ext4:
            ("mkfs.ext4", ["-E", fsOptions.isEmpty ? "nodiscard,lazy_itable_init=0,lazy_journal_init=0" : fsOptions, device])
        case .ext2:
            ("mkfs.ext2", (fsOptions.isEmpty ? [] : ["-E", fsOptions]) + [device])
        case .xfs:
            ("mkfs.xfs", (fsOptions.isEmpty ? [] : fsOptions.split(separator: " ").map(String.init)) + [device])
        }
    }

    func makeFileSystem(_ device: String) throws(BerthError) {
        let (program, arguments) = Self.mkfsCommand(settings.fsType, fsOptions: settings.fsOptions, device: device)
        logger.debug("creating file system", metadata: ["command": "\(program) \(arguments.joined(separator: " "))"])
        let (status, output) = try pool.executor.run(program, arguments)
        guard status == 0 else { throw .internalError("\(program) couldn't initialize \"\(device)\": \(output)") }
    }

    /// A fresh file system's `lost+found` is not part of any image: mount it once and remove it (best effort).
    func removeLostFound(_ mounts: [Mount]) {
        guard let mount = mounts.first else { return }
        let directory = NSTemporaryDirectory() + "berth-devmapper-\(UUID().uuidString.prefix(8))"
        guard (try? FileSystem.makeDirectories(directory, mode: 0o700)) != nil else { return }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let options = mount.options.isEmpty ? [] : ["-o", mount.options.joined(separator: ",")]
        guard let (status, _) = try? pool.executor.run("mount", ["-t", mount.type] + options + [mount.source, directory]),
            status == 0
        else { return }
        _ = try? FileManager.default.removeItem(atPath: directory + "/lost+found")
        _ = try? pool.executor.run("umount", [directory])
    }

    public func commit(_ name: String, key: String, labels: [String: String]) async throws(BerthError) {
        try await store.write { tx throws(BerthError) in
            let (id, info, _) = try tx.getInfo(key)
            guard info.kind == .active else {
                throw .failedPrecondition("snapshot \(key) is not active, it is \(info.kind.description.lowercased())")
            }
            let device = self.deviceName(id)
            let usage = SnapshotUsage(size: try self.pool.usage(device))
            var labels = labels
            if let fsType = info.labels[Self.fsTypeLabel] { labels[Self.fsTypeLabel] = fsType }
            try tx.commitActive(key: key, name: name, usage: usage, labels: labels)
            // The committed device is not used directly any more: flush it (suspend, then resume so no I/O
            // hangs) and deactivate it so that nothing in user space touches it.
            try self.pool.suspend(device)
            try self.pool.resume(device)
            try self.pool.deactivate(device, deferred: true, force: false)
        }
    }

    public func remove(_ key: String) async throws(BerthError) {
        try await store.write { tx throws(BerthError) in
            let (id, _) = try tx.remove(key)
            let device = self.deviceName(id)
            if self.settings.asyncRemove {
                try self.pool.markRemoved(device)
                return
            }
            do throws(BerthError) {
                try self.pool.removeDevice(device)
            } catch {
                self.logger.error("failed to remove device", metadata: ["device": "\(device)", "error": "\(error)"])
                throw BerthError.failedPrecondition("failed to remove device \(device): \(error.message)")
            }
        }
    }

    public func walk(_ filter: Filter) async throws(BerthError) -> [SnapshotInfo] {
        try await store.read { tx throws(BerthError) in try tx.walk(filter) }
    }

    /// With `async_remove`: deletes every device a removal marked `removed`.
    public func cleanup() async throws(BerthError) {
        guard settings.asyncRemove else { return }
        var problems: [String] = []
        for device in try pool.metadata.devices() where device.state == .removed {
            do throws(BerthError) {
                try pool.removeDevice(device.name)
            } catch {
                problems.append(error.message)
            }
        }
        if !problems.isEmpty { throw .internalError("devmapper cleanup: " + problems.joined(separator: "; ")) }
    }

    public func close() async {
        store.close()
        pool.close()
    }
}
