import BerthCore
import Foundation
import GRDB

/// The devmapper pool's own metadata (containerd's `PoolMetadata`, bolt there, SQLite here):
/// `<root_path>/<pool_name>.db` with the thin devices by name and the device-id allocator. Ids are taken from a
/// sequence starting at 1 up to 2^24-1; freed ids are reused lowest first; ids of faulty devices stay reserved.
/// Every method is one transaction.
public final class PoolMetadata: Sendable {
    let queue: DatabaseQueue
    let maxID: UInt32

    enum IDState: Int {
        case free = 0, taken = 1, faulty = 2
    }

    /// `maxID` is the largest id handed out (tests lower it to reach exhaustion).
    public init(path: String, maxID: UInt32 = maxDeviceID) throws(BerthError) {
        self.maxID = maxID
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            queue = try DatabaseQueue(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1: devices") { db in
                try db.execute(
                    sql: """
                        CREATE TABLE devices (
                            name TEXT PRIMARY KEY,
                            device_id INTEGER NOT NULL,
                            size INTEGER NOT NULL,
                            parent_name TEXT NOT NULL DEFAULT '',
                            state INTEGER NOT NULL,
                            error TEXT NOT NULL DEFAULT ''
                        );
                        CREATE TABLE device_ids (id INTEGER PRIMARY KEY, state INTEGER NOT NULL);
                        CREATE TABLE sequence (id INTEGER PRIMARY KEY CHECK (id = 0), last INTEGER NOT NULL);
                        INSERT INTO sequence (id, last) VALUES (0, 0);
                        """)
            }
            try migrator.migrate(queue)
        } catch {
            throw .internalError("opening devmapper metadata \(path): \(error)")
        }
    }

    public func close() {
        try? queue.close()
    }

    private func write<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        try BerthError.storing("devmapper metadata") { try queue.write { db in try body(db) } }
    }

    private func read<T>(_ body: (Database) throws -> T) throws(BerthError) -> T {
        try BerthError.storing("devmapper metadata") { try queue.read { db in try body(db) } }
    }

    private static func device(_ db: Database, _ name: String) throws -> DeviceInfo? {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT device_id, size, name, parent_name, state, error FROM devices WHERE name = ?",
            arguments: [name])
        else { return nil }
        return decode(row)
    }

    private static func decode(_ row: Row) -> DeviceInfo {
        DeviceInfo(
            deviceID: UInt32(truncatingIfNeeded: row[0] as Int64), size: UInt64(max(0, row[1] as Int64)),
            name: row[2], parentName: row[3], state: DeviceState(rawValue: row[4]) ?? .faulty, error: row[5])
    }

    private static func put(_ db: Database, _ info: DeviceInfo) throws {
        try db.execute(
            sql: """
                INSERT OR REPLACE INTO devices (name, device_id, size, parent_name, state, error)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
            arguments: [info.name, Int64(info.deviceID), Int64(info.size), info.parentName, info.state.rawValue,
                        info.error])
    }

    private static func mark(_ db: Database, _ id: UInt32, _ state: IDState) throws {
        try db.execute(
            sql: "INSERT OR REPLACE INTO device_ids (id, state) VALUES (?, ?)", arguments: [Int64(id), state.rawValue])
    }

    /// The lowest free id, else the next from the sequence; marks it taken.
    private func nextID(_ db: Database) throws -> UInt32 {
        if let reused = try Int64.fetchOne(
            db, sql: "SELECT id FROM device_ids WHERE state = ? ORDER BY id LIMIT 1", arguments: [IDState.free.rawValue])
        {
            let id = UInt32(truncatingIfNeeded: reused)
            try Self.mark(db, id, .taken)
            return id
        }
        let last = try Int64.fetchOne(db, sql: "SELECT last FROM sequence WHERE id = 0") ?? 0
        guard last < Int64(maxID) else {
            throw BerthError.unavailable("dm-meta: couldn't find free device key (all \(maxID) device ids in use)")
        }
        try db.execute(sql: "UPDATE sequence SET last = ? WHERE id = 0", arguments: [last + 1])
        let id = UInt32(last + 1)
        try Self.mark(db, id, .taken)
        return id
    }

    /// Records a new device with a freshly allocated id and returns it. AlreadyExists when a device of that
    /// name exists, unless it is faulty: then it gets a new id (the faulty id stays reserved), as containerd.
    @discardableResult
    public func addDevice(_ info: DeviceInfo) throws(BerthError) -> DeviceInfo {
        try write { db in
            if let existing = try Self.device(db, info.name), existing.state != .faulty {
                throw BerthError.alreadyExists("device \(info.name): object already exists")
            }
            var stored = info
            stored.deviceID = try nextID(db)
            try Self.put(db, stored)
            return stored
        }
    }

    /// Marks the device and its id faulty; the id is not reused.
    public func markFaulty(_ name: String, error: String = "") throws(BerthError) {
        try write { db in
            guard var device = try Self.device(db, name) else { throw BerthError.notFound("device \(name): not found") }
            device.state = .faulty
            if !error.isEmpty { device.error = error }
            try Self.put(db, device)
            try Self.mark(db, device.deviceID, .faulty)
        }
    }

    /// Moves the device to `state` if the state machine allows it (FailedPrecondition otherwise) and records
    /// `error` (empty clears it). Name and id never change.
    @discardableResult
    public func transition(_ name: String, to state: DeviceState, error: String = "") throws(BerthError) -> DeviceInfo {
        try write { db in
            guard var device = try Self.device(db, name) else { throw BerthError.notFound("device \(name): not found") }
            guard device.state.canTransition(to: state) else {
                throw BerthError.failedPrecondition(
                    "device \(name): illegal state transition \(device.state) -> \(state)")
            }
            device.state = state
            device.error = error
            try Self.put(db, device)
            return device
        }
    }

    /// Records why the device's current operation failed, leaving its state as is.
    public func recordError(_ name: String, _ error: String) throws(BerthError) {
        try write { db in
            try db.execute(sql: "UPDATE devices SET error = ? WHERE name = ?", arguments: [error, name])
        }
    }

    public func device(_ name: String) throws(BerthError) -> DeviceInfo {
        let found = try read { db in try Self.device(db, name) }
        guard let found else { throw .notFound("device \(name): not found") }
        return found
    }

    /// Forgets the device and frees its id.
    public func removeDevice(_ name: String) throws(BerthError) {
        try write { db in
            guard let device = try Self.device(db, name) else { throw BerthError.notFound("device \(name): not found") }
            try db.execute(sql: "DELETE FROM devices WHERE name = ?", arguments: [name])
            try Self.mark(db, device.deviceID, .free)
        }
    }

    /// Every device, by name.
    public func devices() throws(BerthError) -> [DeviceInfo] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT device_id, size, name, parent_name, state, error FROM devices ORDER BY name")
                .map(Self.decode)
        }
    }

    /// Ids reserved because their device went faulty.
    public func faultyIDs() throws(BerthError) -> [UInt32] {
        try read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM device_ids WHERE state = ? ORDER BY id", arguments: [IDState.faulty.rawValue])
                .map { UInt32(truncatingIfNeeded: $0) }
        }
    }
}
