import BerthCore

/// Thin devices ids are 24-bit numbers inside a pool (kernel thin-provisioning).
public let maxDeviceID: UInt32 = 0xff_ffff

/// A thin device's state as the metadata store records it (containerd's `DeviceState`, same numbers). An
/// operation first records its "-ing" state, runs, then records the result; a crash leaves the "-ing" state,
/// which the next start marks `faulty`.
public enum DeviceState: Int, Sendable, CaseIterable, CustomStringConvertible {
    case unknown = 0
    case creating, created, activating, activated, suspending, suspended, resuming, resumed
    case deactivating, deactivated, removing, removed
    case faulty

    public var description: String {
        switch self {
        case .unknown: "Unknown"
        case .creating: "Creating"
        case .created: "Created"
        case .activating: "Activating"
        case .activated: "Activated"
        case .suspending: "Suspending"
        case .suspended: "Suspended"
        case .resuming: "Resuming"
        case .resumed: "Resumed"
        case .deactivating: "Deactivating"
        case .deactivated: "Deactivated"
        case .removing: "Removing"
        case .removed: "Removed"
        case .faulty: "Faulty"
        }
    }

    /// States an operation is half way through.
    public var isTransient: Bool {
        [.unknown, .creating, .activating, .suspending, .resuming, .deactivating, .removing].contains(self)
    }

    /// The state machine. An operation may start (enter its "-ing" state) from the states listed, an "-ing" state
    /// may end only in its own result, a failed operation (still in its "-ing" state) may be retried or rolled
    /// back by removal, and any state may become `faulty`.
    public func canTransition(to next: DeviceState) -> Bool {
        if next == .faulty { return true }
        if isTransient && self != .unknown && (next == self || next == .removing) { return true }
        switch (self, next) {
        case (.unknown, .creating), (.faulty, .creating): return true
        case (.creating, .created), (.activating, .activated), (.suspending, .suspended),
            (.resuming, .resumed), (.deactivating, .deactivated), (.removing, .removed):
            return true
        // activate: a new device, or one a reboot deactivated behind the store's back
        case (.created, .activating), (.deactivated, .activating), (.activated, .activating), (.resumed, .activating):
            return true
        case (.activated, .suspending), (.resumed, .suspending): return true
        case (.suspended, .resuming): return true
        case (.activated, .deactivating), (.resumed, .deactivating), (.suspended, .deactivating),
            (.deactivated, .deactivating), (.removed, .deactivating):
            return true
        // remove: any settled state (async removal marks `removed` first and deletes in cleanup)
        case (.created, .removing), (.activated, .removing), (.resumed, .removing), (.suspended, .removing),
            (.deactivated, .removing), (.removed, .removing), (.faulty, .removing):
            return true
        // async removal marks a device removed before anything is torn down
        case (.created, .removed), (.activated, .removed), (.resumed, .removed), (.suspended, .removed),
            (.deactivated, .removed):
            return true
        default: return false
        }
    }
}

/// A thin device in the pool (containerd's `DeviceInfo`).
public struct DeviceInfo: Sendable, Equatable {
    /// The 24-bit id inside the thin-pool.
    public var deviceID: UInt32
    /// Virtual size in bytes.
    public var size: UInt64
    /// The name under /dev/mapper/.
    public var name: String
    /// The device this one is a snapshot of; empty for a base device.
    public var parentName: String
    public var state: DeviceState
    /// Why the last operation failed; empty after a success.
    public var error: String

    public init(
        deviceID: UInt32 = 0, size: UInt64, name: String, parentName: String = "", state: DeviceState = .unknown,
        error: String = ""
    ) {
        self.deviceID = deviceID
        self.size = size
        self.name = name
        self.parentName = parentName
        self.state = state
        self.error = error
    }
}
