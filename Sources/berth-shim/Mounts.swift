// Rootfs mounts from a Create request (containerd's mount.All), mounted onto <bundle>/rootfs and unmounted on Delete.
#if canImport(Glibc)
import Glibc
#endif
import BerthShimAPI
import BerthTTRPC
import CBerthShim

enum RootfsMounts {
    /// <sys/mount.h> values (the Glibc module does not export them reliably).
    static let msReadOnly: UInt = 1, msRemount: UInt = 32, msBind: UInt = 4096

    /// Mounts each of `mounts` onto `target` in order: options that are mount flags become flags, the rest data.
    static func mount(_ mounts: [Containerd_Types_Mount], on target: String) throws(TTRPCError) {
        try makeDirectories(target)
        var done = 0
        do throws(TTRPCError) {
            for entry in mounts {
                var flags: UInt = 0
                var data: [String] = []
                var propagation: UInt = 0
                for option in entry.options {
                    var clear: Int32 = 0
                    let flag = berth_shim_mount_flag(option, &clear)
                    if clear < 0 {
                        data.append(option)
                    } else if clear == 1 {
                        flags &= ~flag
                    } else {
                        flags |= flag
                    }
                }
                let type = entry.type == "bind" ? "none" : entry.type
                let isBind = flags & msBind != 0
                if isBind && flags & msReadOnly != 0 { propagation = flags }
                let result = berth_shim_mount(
                    entry.source, target, type, isBind ? flags & ~msReadOnly : flags,
                    data.isEmpty ? nil : data.joined(separator: ","))
                if result != 0 {
                    throw sysError("failed to mount rootfs component \(entry.source) (\(entry.type)) on \(target)", -result)
                }
                done += 1
                // A read-only bind needs a remount: the first bind ignores MS_RDONLY.
                if propagation != 0 {
                    let remount = berth_shim_mount("", target, "", propagation | msRemount, nil)
                    if remount != 0 { throw sysError("remount \(target) read-only", -remount) }
                }
            }
        } catch {
            for _ in 0..<done { _ = berth_shim_umount(target, 1) }
            throw error
        }
    }

    /// Unmounts everything stacked on `target` (until nothing is mounted there).
    static func unmountAll(_ target: String) {
        for _ in 0..<64 {
            let result = berth_shim_umount(target, 0)
            if result == -EBUSY {
                _ = berth_shim_umount(target, 1)
                continue
            }
            if result != 0 { return }
        }
    }
}
