#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import Synchronization

/// A task's bundle, containerd's layout: `<state>/<ns>/<id>` holds config.json, `rootfs/` (the shim mounts the
/// container's rootfs there), `log` (the shim's log FIFO), `address` (written by the shim), `shim-binary-path`, and
/// `work` → `<root>/<ns>/<id>`, the runtime's persistent working directory. Only shims that may use `work` get it
/// (containerd's runc shim keeps checkpoint images there); berth-shim has no checkpoint, and on a busy ext4 the
/// directory and its link cost two inode allocations per container.
struct Bundle: Sendable {
    let namespace: String
    let id: String
    let path: String
    let work: String
    /// `<state>/<ns>`, removed with the last bundle of the namespace.
    let namespaceDirectory: String

    init(root: String, state: String, namespace: String, id: String) {
        self.namespace = namespace
        self.id = id
        namespaceDirectory = "\(state)/\(namespace)"
        path = "\(state)/\(namespace)/\(id)"
        work = "\(root)/\(namespace)/\(id)"
    }

    var rootfs: String { path + "/rootfs" }
    var logFIFO: String { path + "/log" }

    /// Creates the directories (the work directory too when `work`) and writes config.json (AlreadyExists if the
    /// bundle is there).
    func create(spec: [UInt8], work withWork: Bool) throws(BerthError) {
        try FileSystem.makeDirectories(namespaceDirectory, mode: 0o711)
        guard mkdir(path, 0o700) == 0 else {
            if errno == EEXIST { throw .alreadyExists("bundle \(path)") }
            throw .internalError("mkdir \(path): \(FileSystem.errnoMessage())")
        }
        do {
            guard mkdir(rootfs, 0o711) == 0 else {
                throw BerthError.internalError("mkdir \(rootfs): \(FileSystem.errnoMessage())")
            }
            try? FileManager.default.removeItem(atPath: work)
            if withWork {
                try FileSystem.makeDirectories(work, mode: 0o711)
                guard symlink(work, path + "/work") == 0 else {
                    throw BerthError.internalError("symlink work: \(FileSystem.errnoMessage())")
                }
            }
            try FileSystem.write(path + "/config.json", spec)
        } catch {
            delete()
            throw BerthError.wrap(error)
        }
    }

    /// Unmounts whatever is left on rootfs (the shim normally unmounts it). No mountinfo scan: umount2 itself
    /// says when rootfs is no longer a mount point, and the host's mount table grows with every running container.
    func unmountRootfs() {
        try? Mounting.unmountAll(rootfs, detach: true)
    }

    /// Unmounts the rootfs and removes the bundle and its work directory.
    func delete() {
        unmountRootfs()
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: work)
        rmdir(namespaceDirectory)  // the namespace directory, once empty
    }

    func read(_ name: String) -> String? {
        FileManager.default.contents(atPath: "\(path)/\(name)").map { String(decoding: $0, as: UTF8.self) }
    }

    /// The address the shim wrote (`unix://<socket>`), trimmed; nil when there is none.
    var shimAddress: String? {
        guard let address = read("address")?.trimmingCharacters(in: .whitespacesAndNewlines), !address.isEmpty else {
            return nil
        }
        return address
    }

    func write(_ name: String, _ contents: String) {
        try? FileSystem.write("\(path)/\(name)", Array(contents.utf8), mode: 0o600)
    }
}

/// Drains every shim's log FIFO to berthd's stderr on one thread (containerd copies shim logs to its output). The
/// daemon opens the FIFO read-write and non-blocking, so a shim never blocks on it, also while berthd restarts.
final class LogDrain: Sendable {
    private let fds = Mutex<[Int32: String]>([:])
    private let closing = Mutex<Set<Int32>>([])

    init() {
        let thread = Thread { [self] in loop() }
        thread.name = "shim-logs"
        thread.start()
    }

    /// Creates (if needed) and opens `bundle`'s log FIFO.
    func attach(_ bundle: Bundle) {
        mkfifo(bundle.logFIFO, 0o700)
        let fd = open(bundle.logFIFO, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        fds.withLock { $0[fd] = bundle.path }
    }

    func detach(_ bundle: Bundle) {
        let fd = fds.withLock { fds in fds.first { $0.value == bundle.path }?.key }
        if let fd { closing.withLock { _ = $0.insert(fd) } }
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            for fd in closing.withLock({ c in defer { c = [] }; return c }) {
                fds.withLock { _ = $0.removeValue(forKey: fd) }
                close(fd)
            }
            var polls = fds.withLock { $0.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            if polls.isEmpty {
                usleep(200_000)
                continue
            }
            let ready = poll(&polls, nfds_t(polls.count), 200)
            guard ready > 0 else { continue }
            for p in polls where p.revents & Int16(POLLIN) != 0 {
                let n = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if n > 0 { _ = buffer.withUnsafeBytes { Glibc.write(2, $0.baseAddress, n) } }
            }
        }
    }
}
