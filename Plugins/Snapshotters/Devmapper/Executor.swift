#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// Runs the programs the devmapper snapshotter needs (`dmsetup`, `mkfs.*`, `blkdiscard`, `mount`, `umount`).
/// The snapshotter issues every device operation through this, so the exact command lines can be recorded
/// where the kernel has no device-mapper.
public protocol DeviceCommandExecutor: Sendable {
    /// Runs `program` (a name looked up in /usr/sbin, /sbin, /usr/bin, /bin) to completion: status and
    /// combined output. Throws only when it cannot be started.
    func run(_ program: String, _ arguments: [String]) throws(BerthError) -> (status: Int32, output: String)
}

/// Runs the real programs.
public struct SystemCommandExecutor: DeviceCommandExecutor {
    public init() {}

    public func run(_ program: String, _ arguments: [String]) throws(BerthError) -> (status: Int32, output: String) {
        guard let path = Self.locate(program) else { throw .notFound("\(program): executable file not found") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw .internalError("start \(path): \(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func locate(_ program: String) -> String? {
        if program.hasPrefix("/") { return program }
        return ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { $0 + "/" + program }.first { access($0, X_OK) == 0 }
    }
}

/// Whether this kernel has device-mapper: `/proc/misc` or `/proc/devices` lists it, or /dev/mapper/control
/// exists. Returns the skip reason when it does not.
public enum DeviceMapperSupport {
    public static func missingReason(
        procMisc: String? = try? FileSystem.read("/proc/misc"),
        procDevices: String? = try? FileSystem.read("/proc/devices"),
        controlExists: Bool = FileSystem.exists("/dev/mapper/control")
    ) -> String? {
        func lists(_ text: String?) -> Bool {
            (text ?? "").split(separator: "\n").contains { $0.split(separator: " ").last == "device-mapper" }
        }
        if controlExists || lists(procMisc) || lists(procDevices) { return nil }
        return "device-mapper is not available in this kernel (no device-mapper in /proc/misc or /proc/devices, "
            + "no /dev/mapper/control)"
    }
}
