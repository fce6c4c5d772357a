import BerthAPI
import BerthCore
import BerthGRPC
import BerthSpec
import Foundation
import GRPCCore
import SwiftProtobuf

/// `berth run` as ctr does it: image → snapshot under a lease → container → task with stdio FIFOs → wait → start,
/// then the exit status, with `--rm` cleaning task, container and snapshot.
struct RunFlow: Sendable {
    var id: String
    var image: String
    var options: RunOptions
    var runtime: String
    var snapshotter: String
    var labels: [String: String]
    var fifoDir: String
    var rm: Bool
    var detach: Bool
    var interactive: Bool

    /// Runs the container; returns its exit status (0 when detached).
    func run(_ c: BerthConnection) async throws -> UInt32 {
        let resolved = try await ImageResolver.resolve(c, reference: image)
        let mounts = try await createContainer(c, resolved)
        do {
            return try await ContainerTask.run(
                c, id: id, rootfs: mounts, terminal: options.tty, stdin: interactive, detach: detach,
                fifoDir: fifoDir, cleanup: rm)
        } catch {
            if rm { await ContainerCleanup.remove(c, id: id, force: true) }
            throw error
        }
    }

    /// Prepares the snapshot and creates the container under a temporary lease; returns the rootfs mounts.
    func createContainer(_ c: BerthConnection, _ resolved: ResolvedImage) async throws -> [Containerd_Types_Mount] {
        let snapshots = SnapshotsAPI.Client(wrapping: c.client)
        var stat = Containerd_Services_Snapshots_V1_StatSnapshotRequest()
        (stat.snapshotter, stat.key) = (snapshotter, resolved.chainID)
        let unpacked = (try? await snapshots.stat(stat, metadata: c.metadata)) != nil
        var lease = Containerd_Services_Leases_V1_CreateRequest()
        lease.labels = [GCLabels.expire: Date().addingTimeInterval(86400).formatted(.iso8601)]
        let leaseID = try await LeasesAPI.Client(wrapping: c.client).create(lease, metadata: c.metadata).lease.id
        var leased = c.metadata
        leased.addString(leaseID, forKey: ContextInterceptor.leaseHeader)
        let mounts: [Containerd_Types_Mount]
        do {
            if !unpacked { try await Unpacker.unpack(c, resolved, snapshotter: snapshotter, lease: leased) }
            var prepare = Containerd_Services_Snapshots_V1_PrepareSnapshotRequest()
            (prepare.snapshotter, prepare.key, prepare.parent) = (snapshotter, id, resolved.chainID)
            mounts = try await snapshots.prepare(prepare, metadata: leased).mounts
        } catch {
            var delete = Containerd_Services_Leases_V1_DeleteRequest()
            delete.id = leaseID
            _ = try? await LeasesAPI.Client(wrapping: c.client).delete(delete, metadata: c.metadata)
            throw error
        }
        do {
            let users = RootfsUsers.read(mounts)
            var spec = try SpecBuilder().build(
                id: id, namespace: c.namespace, image: resolved.config, options: options, users: users)
            // The pty starts at this terminal's size (runc applies consoleSize when it creates the console).
            if options.tty, let size = Terminal.size() {
                spec.process?.consoleSize = Box(width: UInt(size.width), height: UInt(size.height))
            }
            var container = Containerd_Services_Containers_V1_Container()
            container.id = id
            container.image = resolved.name
            container.labels = resolved.labels.merging(labels) { $1 }
            container.labels["io.containerd.image.config.stop-signal"] =
                resolved.config.stopSignal.isEmpty ? "SIGTERM" : resolved.config.stopSignal
            container.runtime.name = runtime
            container.spec = Google_Protobuf_Any()
            container.spec.typeURL = Spec.typeURL
            container.spec.value = try JSONEncoder().encode(spec)
            container.snapshotter = snapshotter
            container.snapshotKey = id
            var create = Containerd_Services_Containers_V1_CreateContainerRequest()
            create.container = container
            _ = try await ContainersAPI.Client(wrapping: c.client).create(create, metadata: leased)
        } catch {
            var delete = Containerd_Services_Leases_V1_DeleteRequest()
            delete.id = leaseID
            _ = try? await LeasesAPI.Client(wrapping: c.client).delete(delete, metadata: c.metadata)
            var remove = Containerd_Services_Snapshots_V1_RemoveSnapshotRequest()
            (remove.snapshotter, remove.key) = (snapshotter, id)
            _ = try? await snapshots.remove(remove, metadata: c.metadata)
            throw error
        }
        var delete = Containerd_Services_Leases_V1_DeleteRequest()
        delete.id = leaseID
        _ = try? await LeasesAPI.Client(wrapping: c.client).delete(delete, metadata: c.metadata)
        return mounts
    }
}

/// The image's users and groups, read from its snapshot mounted read-only in a scratch directory (as containerd's
/// `WithUser` does with `mount.WithTempMount`). Empty when mounting is impossible (not root).
enum RootfsUsers {
    static func read(_ mounts: [Containerd_Types_Mount]) -> UserDatabase {
        let empty = UserDatabase(passwd: nil, group: nil)
        let dir = "/tmp/berth-rootfs-\(UInt64.random(in: 0...UInt64.max))"
        guard (try? FileSystem.makeDirectories(dir, mode: 0o700)) != nil else { return empty }
        defer { rmdir(dir) }
        let readOnly = mounts.map { m -> BerthCore.Mount in
            var options = m.options
            if m.type == "overlay" {
                // Upper on top of the lowers, no work dir: a read-only view of the same tree.
                let upper = options.first { $0.hasPrefix("upperdir=") }.map { String($0.dropFirst("upperdir=".count)) }
                options.removeAll { $0.hasPrefix("upperdir=") || $0.hasPrefix("workdir=") }
                if let upper, let i = options.firstIndex(where: { $0.hasPrefix("lowerdir=") }) {
                    options[i] = "lowerdir=\(upper):" + options[i].dropFirst("lowerdir=".count)
                }
            }
            options.removeAll { $0 == "rw" }
            if !options.contains("ro") { options.append("ro") }
            return BerthCore.Mount(type: m.type, source: m.source, target: m.target, options: options)
        }
        guard (try? Mounting.mountAll(readOnly, at: dir)) != nil else { return empty }
        let users = UserDatabase(rootfs: dir)
        if (try? Mounting.unmountAll(dir)) == nil { try? Mounting.unmountAll(dir, detach: true) }
        return users
    }
}
