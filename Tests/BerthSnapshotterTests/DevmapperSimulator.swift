import BerthCore
import Foundation
import Synchronization

@testable import BerthDevmapperSnapshotter

/// This kernel has no device-mapper, so the devmapper tests run the snapshotter against this stand-in for
/// `dmsetup` and friends: it records every command line and keeps the state a thin-pool would (thin ids,
/// active devices, suspension), failing the way dmsetup does (same messages, same exit status) when a command
/// is not valid in that state. Other programs (mkfs, mount, blkdiscard) are recorded and succeed.
final class SimulatedThinPool: DeviceCommandExecutor {
    struct State {
        var commands: [[String]] = []
        var thinIDs: Set<UInt32> = []
        /// Active devices: name → (thin id, suspended).
        var active: [String: (id: UInt32, suspended: Bool)] = [:]
        var mappedSectors: [UInt32: Int64] = [:]
        /// Failures to inject: the next command whose joined text contains the key fails with the value (one
        /// entry per failure, consumed in order).
        var failures: [(match: String, output: String)] = []
    }

    let pool: String
    let state = Mutex(State())

    init(pool: String = "pool") { self.pool = pool }

    var commands: [[String]] { state.withLock { $0.commands } }
    /// Commands as one string each (`dmsetup message pool 0 create_thin 1`).
    var lines: [String] { commands.map { $0.joined(separator: " ") } }
    func clear() { state.withLock { $0.commands = [] } }
    func fail(_ match: String, _ output: String) { state.withLock { $0.failures.append((match, output)) } }
    func setMapped(id: UInt32, sectors: Int64) { state.withLock { $0.mappedSectors[id] = sectors } }
    var activeNames: Set<String> { state.withLock { Set($0.active.keys) } }
    var thinIDs: Set<UInt32> { state.withLock { $0.thinIDs } }
    func deactivateAll() { state.withLock { $0.active = [:] } }

    static func failed(_ what: String, _ reason: String) -> (Int32, String) {
        (1, "device-mapper: \(what) failed: \(reason)\nCommand failed.\n")
    }

    func run(_ program: String, _ arguments: [String]) throws(BerthError) -> (status: Int32, output: String) {
        state.withLock { s in
            s.commands.append([program] + arguments)
            let line = ([program] + arguments).joined(separator: " ")
            if let index = s.failures.firstIndex(where: { line.contains($0.match) }) {
                return (1, s.failures.remove(at: index).output)
            }
            guard program == "dmsetup", let verb = arguments.first else { return (0, "") }
            return dmsetup(&s, verb, Array(arguments.dropFirst()))
        }
    }

    private func dmsetup(_ s: inout State, _ verb: String, _ args: [String]) -> (Int32, String) {
        let poolPath = DMSetup.fullPath(pool)
        switch verb {
        case "version":
            return (0, "Library version:   1.02.185 (2022-05-18)\nDriver version:    4.47.0\n")
        case "info":
            let name = args.last ?? ""
            if name == poolPath || name == pool { return (0, "\(pool) 253:0 L--w 253 0 0 1 0\n") }
            guard let device = s.active[name] else { return (1, "Device does not exist.\nCommand failed.\n") }
            return (0, "\(name) 253:\(device.id) L\(device.suspended ? "s" : "-")-w 253 \(device.id) 0 1 0\n")
        case "message":
            guard args.count == 3, args[0] == pool || args[0] == poolPath else { return Self.failed("message ioctl", "No such device or address") }
            let words = args[2].split(separator: " ")
            let ids = words.dropFirst().compactMap { UInt32($0) }
            switch (words.first, ids.count) {
            case ("create_thin", 1):
                guard s.thinIDs.insert(ids[0]).inserted else { return Self.failed("message ioctl on \(pool) ", "File exists") }
            case ("create_snap", 2):
                guard s.thinIDs.contains(ids[1]) else { return Self.failed("message ioctl on \(pool) ", "No data available") }
                if let origin = s.active.values.first(where: { $0.id == ids[1] }), !origin.suspended {
                    return Self.failed("message ioctl on \(pool) ", "Invalid argument")  // origin must be suspended
                }
                guard s.thinIDs.insert(ids[0]).inserted else { return Self.failed("message ioctl on \(pool) ", "File exists") }
            case ("delete", 1):
                if s.active.values.contains(where: { $0.id == ids[0] }) {
                    return Self.failed("message ioctl on \(pool) ", "Device or resource busy")
                }
                guard s.thinIDs.remove(ids[0]) != nil else { return Self.failed("message ioctl on \(pool) ", "No data available") }
            default:
                return Self.failed("message ioctl on \(pool) ", "Invalid argument")
            }
            return (0, "")
        case "create":
            guard args.count == 3, args[1] == "--table" else { return (1, "Invalid arguments\nCommand failed.\n") }
            let table = args[2].split(separator: " ")
            guard table.count >= 5, table[2] == "thin", table[3] == Substring(poolPath), let id = UInt32(table[4]),
                s.thinIDs.contains(id)
            else { return Self.failed("reload ioctl on \(args[0]) ", "No data available") }
            guard s.active[args[0]] == nil else { return Self.failed("create ioctl on \(args[0]) ", "Device or resource busy") }
            s.active[args[0]] = (id, false)
            return (0, "")
        case "suspend", "resume":
            guard let name = args.last, s.active[name] != nil else { return (1, "Device does not exist.\nCommand failed.\n") }
            s.active[name]?.suspended = verb == "suspend"
            return (0, "")
        case "remove":
            let name = (args.last ?? "").replacingOccurrences(of: DMSetup.devMapperDirectory, with: "")
            guard s.active.removeValue(forKey: name) != nil else { return (1, "Device \(args.last ?? "") not found\nCommand failed.\n") }
            return (0, "")
        case "status":
            guard let name = args.last, let device = s.active[name] else { return (1, "Device does not exist.\nCommand failed.\n") }
            return (0, "0 20971520 thin \(s.mappedSectors[device.id] ?? 0) 20971519\n")
        default:
            return (1, "Unknown command\nCommand failed.\n")
        }
    }
}
