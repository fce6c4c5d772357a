#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation
import Logging

/// A thin-pool and its thin devices (containerd's `PoolDevice`): creates, snapshots, activates, suspends,
/// resumes, deactivates and deletes thin devices with `dmsetup`, recording each step in `PoolMetadata` through
/// the device state machine (trying state, operation, result state or the error).
public final class PoolDevice: Sendable {
    public let poolName: String
    public let metadata: PoolMetadata
    let discardBlocks: Bool
    let executor: any DeviceCommandExecutor
    let logger: Logger
    /// EBUSY retries of removals (containerd: 100 × 100 ms).
    let retries: Int
    let retryDelay: Duration

    public init(
        poolName: String, metadata: PoolMetadata, discardBlocks: Bool, executor: any DeviceCommandExecutor,
        logger: Logger, retries: Int = 100, retryDelay: Duration = .milliseconds(100)
    ) {
        self.poolName = poolName
        self.metadata = metadata
        self.discardBlocks = discardBlocks
        self.executor = executor
        self.logger = logger
        self.retries = retries
        self.retryDelay = retryDelay
    }

    /// Runs dmsetup; the trimmed output, or the failure with the errno found in the output.
    func dmsetup(_ arguments: [String]) -> Result<String, BerthError> {
        do throws(BerthError) {
            let (status, output) = try executor.run("dmsetup", arguments)
            if status == 0 { return .success(output.trimmingCharacters(in: .whitespacesAndNewlines)) }
            let code = DMSetup.errno(fromOutput: output)
            let text = "dmsetup \(arguments.joined(separator: " ")): "
                + output.trimmingCharacters(in: .whitespacesAndNewlines)
            switch code {
            case ENXIO, ENODEV: return .failure(.notFound(text))
            case EEXIST: return .failure(.alreadyExists(text))
            case EBUSY: return .failure(.unavailable(text))
            case ENODATA: return .failure(BerthError(.notFound, text + " (no data)"))
            default: return .failure(.internalError(text))
            }
        } catch {
            return .failure(error)
        }
    }

    func dmsetupOrThrow(_ arguments: [String]) throws(BerthError) -> String {
        try dmsetup(arguments).get()
    }

    /// Runs `body`, retrying while the device is busy.
    func retryingBusy(_ body: () throws(BerthError) -> Void) throws(BerthError) {
        var attempt = 1
        while true {
            do throws(BerthError) {
                return try body()
            } catch where error.code == .unavailable && attempt < retries {
                if attempt % 10 == 0 { logger.warning("retrying (\(attempt) of \(retries))", metadata: ["error": "\(error)"]) }
                attempt += 1
                let (seconds, attoseconds) = retryDelay.components
                usleep(UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
            }
        }
    }

    /// Checks dmsetup works and the pool exists.
    public func checkPool() throws(BerthError) {
        _ = try dmsetupOrThrow(DMSetup.version())
        do throws(BerthError) {
            _ = try dmsetupOrThrow(DMSetup.info(DMSetup.fullPath(poolName)))
        } catch {
            throw BerthError(error.code, "failed to query pool \"\(DMSetup.fullPath(poolName))\": \(error.message)")
        }
    }

    /// After a restart: devices left half way through an operation become faulty; devices recorded as activated
    /// whose device is gone (a reboot) are activated again.
    public func ensureDeviceStates() throws(BerthError) {
        var problems: [String] = []
        for device in try metadata.devices() {
            switch device.state {
            case .suspended, .resumed, .deactivated, .removed, .faulty, .created:
                continue
            case .activated:
                if isActivated(device.name) { continue }
                logger.warning("devmapper device marked activated but not active, activating it", metadata: ["device": "\(device.name)"])
                do throws(BerthError) { try activate(device) } catch { problems.append(error.message) }
            default:
                logger.warning("devmapper device has invalid state, marking it faulty", metadata: [
                    "device": "\(device.name)", "state": "\(device.state)", "error": "\(device.error)",
                ])
                do throws(BerthError) { try metadata.markFaulty(device.name) } catch { problems.append(error.message) }
            }
        }
        if !problems.isEmpty { throw .internalError("devmapper: " + problems.joined(separator: "; ")) }
    }

    /// Records `trying`, runs `operation`, then records `success` or the error (the state stays `trying`).
    func transition(
        _ name: String, _ trying: DeviceState, _ success: DeviceState, _ operation: () throws(BerthError) -> Void
    ) throws(BerthError) {
        try metadata.transition(name, to: trying)
        do throws(BerthError) {
            try operation()
        } catch {
            try? metadata.recordError(name, error.description)
            throw error
        }
        try metadata.transition(name, to: success)
    }

    /// A new base thin device of `size` bytes, activated as /dev/mapper/<name>.
    public func createThinDevice(_ name: String, size: UInt64) throws(BerthError) {
        let info = try metadata.addDevice(DeviceInfo(size: size, name: name))
        do throws(BerthError) {
            try transition(name, .creating, .created) { () throws(BerthError) in
                _ = try dmsetupOrThrow(DMSetup.createThin(pool: poolName, id: info.deviceID))
            }
        } catch {
            try? metadata.markFaulty(name, error: error.description)
            throw BerthError(error.code, "failed to create new thin device \"\(name)\" (dev: \(info.deviceID)): \(error.message)")
        }
        try activateOrRollBack(info)
    }

    /// A thin snapshot `name` of device `parent`, activated. An active parent is suspended around the snapshot,
    /// as the kernel requires.
    public func createSnapshotDevice(parent: String, name: String, size: UInt64) throws(BerthError) {
        let base = try metadata.device(parent)
        let parentLoaded = isLoaded(parent)
        if parentLoaded { try suspend(parent) }
        defer {
            if parentLoaded {
                do throws(BerthError) { try resume(parent) } catch {
                    logger.error("failed to resume base device after taking its snapshot", metadata: ["device": "\(parent)"])
                }
            }
        }
        let info = try metadata.addDevice(DeviceInfo(size: size, name: name, parentName: parent))
        do throws(BerthError) {
            try transition(name, .creating, .created) { () throws(BerthError) in
                _ = try dmsetupOrThrow(DMSetup.createSnapshot(pool: poolName, id: info.deviceID, origin: base.deviceID))
            }
        } catch {
            try? metadata.markFaulty(name, error: error.description)
            throw BerthError(error.code,
                "failed to create snapshot \"\(name)\" (dev: \(info.deviceID)) from \"\(parent)\" (dev: \(base.deviceID)): \(error.message)")
        }
        try activateOrRollBack(info)
    }

    /// Activation failed: delete the thin device and free its id, or mark it faulty when even that fails.
    private func activateOrRollBack(_ info: DeviceInfo) throws(BerthError) {
        do throws(BerthError) {
            try activate(info)
        } catch {
            do throws(BerthError) {
                try deleteDevice(info)
                try metadata.removeDevice(info.name)
            } catch let rollback {
                try? metadata.markFaulty(info.name, error: rollback.description)
            }
            throw error
        }
    }

    func activate(_ info: DeviceInfo) throws(BerthError) {
        do throws(BerthError) {
            try transition(info.name, .activating, .activated) { () throws(BerthError) in
                _ = try dmsetupOrThrow(DMSetup.activate(pool: poolName, name: info.name, id: info.deviceID, sizeBytes: info.size))
            }
        } catch {
            throw BerthError(error.code, "failed to activate new thin device \"\(info.name)\" (dev: \(info.deviceID)): \(error.message)")
        }
    }

    /// Flushes outstanding I/O and blocks further I/O.
    public func suspend(_ name: String) throws(BerthError) {
        try transition(name, .suspending, .suspended) { () throws(BerthError) in _ = try dmsetupOrThrow(DMSetup.suspend(name)) }
    }

    public func resume(_ name: String) throws(BerthError) {
        try transition(name, .resuming, .resumed) { () throws(BerthError) in _ = try dmsetupOrThrow(DMSetup.resume(name)) }
    }

    /// Removes /dev/mapper/<name> (the thin device stays in the pool); a no-op when it is not loaded.
    public func deactivate(_ name: String, deferred: Bool, force: Bool) throws(BerthError) {
        guard isLoaded(name) else { return }
        var options: [DMSetup.RemoveOption] = [.retry]
        if deferred { options.append(.deferred) }
        if force { options.append(.force) }
        try transition(name, .deactivating, .deactivated) { () throws(BerthError) in
            try retryingBusy { () throws(BerthError) in
                if !deferred && discardBlocks { try discard(name) }
                // ENXIO: a deferred removal already happened.
                if case .failure(let error) = dmsetup(DMSetup.remove(name, options: options)), error.code != .notFound {
                    throw BerthError(error.code, "failed to deactivate device: \(error.message)")
                }
            }
        }
    }

    /// `blkdiscard` of the whole device, skipped while it is open.
    func discard(_ name: String) throws(BerthError) {
        if let info = try? DMSetup.parseInfo(dmsetupOrThrow(DMSetup.info(name))), info.count == 1, info[0].openCount != 0 {
            logger.warning("device is in use, skipping blkdiscard", metadata: ["device": "\(name)"])
            return
        }
        let (status, output) = try executor.run("blkdiscard", [DMSetup.fullPath(name)])
        guard status == 0 else { throw .internalError("blkdiscard \(DMSetup.fullPath(name)): \(output)") }
    }

    /// Whether the device has a live table.
    public func isActivated(_ name: String) -> Bool {
        guard case .success(let output) = dmsetup(DMSetup.info(name)), let infos = try? DMSetup.parseInfo(output),
            infos.count == 1
        else { return false }
        return infos[0].tableLive
    }

    /// Whether dmsetup knows the device at all.
    public func isLoaded(_ name: String) -> Bool {
        if case .success = dmsetup(DMSetup.info(name)) { return true }
        return false
    }

    /// Bytes the thin device has mapped (`dmsetup status`).
    public func usage(_ name: String) throws(BerthError) -> Int64 {
        do throws(BerthError) {
            return try DMSetup.usedBytes(DMSetup.parseStatus(dmsetupOrThrow(DMSetup.status(name))))
        } catch {
            throw BerthError(error.code, "can't get status for device \"\(name)\": \(error.message)")
        }
    }

    /// Deactivates, deletes from the pool and forgets the device, freeing its id.
    public func removeDevice(_ name: String) throws(BerthError) {
        let info = try metadata.device(name)
        try deactivate(name, deferred: false, force: true)
        try deleteDevice(info)
        try metadata.removeDevice(name)
    }

    func deleteDevice(_ info: DeviceInfo) throws(BerthError) {
        do throws(BerthError) {
            try transition(info.name, .removing, .removed) { () throws(BerthError) in
                try retryingBusy { () throws(BerthError) in
                    // ENODATA: already deleted from the pool.
                    if case .failure(let error) = dmsetup(DMSetup.delete(pool: poolName, id: info.deviceID)),
                        !error.message.hasSuffix("(no data)")
                    {
                        throw error
                    }
                }
            }
        } catch {
            throw BerthError(error.code, "failed to delete device \"\(info.name)\" (dev id: \(info.deviceID)): \(error.message)")
        }
    }

    /// Async removal: only records the device as removed; `cleanup` deletes it later.
    public func markRemoved(_ name: String) throws(BerthError) {
        try metadata.transition(name, to: .removed)
    }

    public func close() {
        metadata.close()
    }
}
