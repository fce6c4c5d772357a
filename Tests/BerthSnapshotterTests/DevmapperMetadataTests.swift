import BerthCore
import Foundation
import Testing

@testable import BerthDevmapperSnapshotter

/// Device ids, the device state machine and their persistence in `<root>/<pool>.db`, plus the dmsetup command
/// lines and output parsing.
@Suite struct DevmapperMetadataTests {
    func withMetadata(maxID: UInt32 = maxDeviceID, _ body: (String, PoolMetadata) throws -> Void) throws {
        let dir = "/var/tmp/berth-dm-meta-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let metadata = try PoolMetadata(path: dir + "/pool.db", maxID: maxID)
        defer { metadata.close() }
        try body(dir + "/pool.db", metadata)
    }

    @Test func allocatesIdsFromOneAndReusesFreedOnesLowestFirst() throws {
        try withMetadata { _, m in
            let ids = try (1...4).map { i in try m.addDevice(DeviceInfo(size: 1024, name: "d\(i)")).deviceID }
            #expect(ids == [1, 2, 3, 4])
            try m.removeDevice("d3")
            try m.removeDevice("d2")
            #expect(try m.addDevice(DeviceInfo(size: 1, name: "e1")).deviceID == 2)
            #expect(try m.addDevice(DeviceInfo(size: 1, name: "e2")).deviceID == 3)
            #expect(try m.addDevice(DeviceInfo(size: 1, name: "e3")).deviceID == 5)
            #expect(try m.device("e1") == DeviceInfo(deviceID: 2, size: 1, name: "e1"))
            #expect(throws: BerthError.notFound("device d3: not found")) { try m.device("d3") }
        }
    }

    @Test func duplicateNamesFailButFaultyDevicesGetANewId() throws {
        try withMetadata { _, m in
            try m.addDevice(DeviceInfo(size: 1, name: "a"))
            #expect(throws: BerthError.alreadyExists("device a: object already exists")) {
                try m.addDevice(DeviceInfo(size: 1, name: "a"))
            }
            try m.markFaulty("a", error: "create_thin failed")
            #expect(try m.device("a").state == .faulty)
            let again = try m.addDevice(DeviceInfo(size: 1, name: "a"))
            #expect(again.deviceID == 2 && again.state == .unknown)
            #expect(try m.faultyIDs() == [1])
            try m.removeDevice("a")  // frees 2, never the faulty 1
            #expect(try m.addDevice(DeviceInfo(size: 1, name: "b")).deviceID == 2)
        }
    }

    @Test func runsOutOfTwentyFourBitIds() throws {
        #expect(maxDeviceID == 16_777_215)
        try withMetadata(maxID: 3) { _, m in
            for i in 1...3 { try m.addDevice(DeviceInfo(size: 1, name: "d\(i)")) }
            let error = try #require(throws: BerthError.self) { try m.addDevice(DeviceInfo(size: 1, name: "d4")) }
            #expect(error.message.contains("couldn't find free device key"))
            try m.removeDevice("d2")
            #expect(try m.addDevice(DeviceInfo(size: 1, name: "d4")).deviceID == 2)
        }
    }

    @Test func stateNamesAndNumbersAreContainerds() {
        #expect(DeviceState.allCases.map(\.description) == [
            "Unknown", "Creating", "Created", "Activating", "Activated", "Suspending", "Suspended", "Resuming",
            "Resumed", "Deactivating", "Deactivated", "Removing", "Removed", "Faulty",
        ])
        #expect(DeviceState.allCases.map(\.rawValue) == Array(0...13))
    }

    @Test func legalLifecycleTransitions() throws {
        try withMetadata { _, m in
            try m.addDevice(DeviceInfo(size: 1, name: "a"))
            let path: [DeviceState] = [
                .creating, .created, .activating, .activated, .suspending, .suspended, .resuming, .resumed,
                .deactivating, .deactivated, .activating, .activated, .removed, .deactivating, .deactivated,
                .removing, .removed,
            ]
            for state in path { #expect(try m.transition("a", to: state).state == state) }
            // A failed operation stays in its -ing state with the error; it may be retried or rolled back.
            try m.addDevice(DeviceInfo(size: 1, name: "b"))
            for state: DeviceState in [.creating, .created, .activating] { try m.transition("b", to: state) }
            try m.recordError("b", "dmsetup create failed")
            #expect(try m.device("b").error == "dmsetup create failed")
            try m.transition("b", to: .activating)
            try m.transition("b", to: .removing)
            #expect(try m.transition("b", to: .removed).error == "")
        }
    }

    @Test(arguments: [
        (DeviceState.unknown, DeviceState.activated), (.unknown, .removing), (.created, .suspending),
        (.created, .resumed), (.activated, .created), (.deactivated, .resuming), (.removed, .activating),
        (.removing, .deactivated), (.suspended, .suspending), (.activating, .created), (.deactivated, .unknown),
    ])
    func illegalTransitionsAreRejected(from: DeviceState, to: DeviceState) throws {
        #expect(!from.canTransition(to: to))
        try withMetadata { _, m in
            try m.addDevice(DeviceInfo(size: 1, name: "a"))
            let route: [DeviceState: [DeviceState]] = [
                .unknown: [], .created: [.creating, .created], .activated: [.creating, .created, .activating, .activated],
                .deactivated: [.creating, .created, .activating, .activated, .deactivating, .deactivated],
                .removed: [.creating, .created, .removed], .removing: [.creating, .created, .removing],
                .suspended: [.creating, .created, .activating, .activated, .suspending, .suspended],
                .activating: [.creating, .created, .activating],
            ]
            for step in try #require(route[from]) { try m.transition("a", to: step) }
            #expect(try m.device("a").state == from)
            #expect(throws: BerthError.failedPrecondition("device a: illegal state transition \(from) -> \(to)")) {
                try m.transition("a", to: to)
            }
            #expect(try m.device("a").state == from)
        }
    }

    @Test func everyStateMayBecomeFaulty() {
        for state in DeviceState.allCases { #expect(state.canTransition(to: .faulty)) }
    }

    @Test func devicesAndAllocatorSurviveReopen() throws {
        try withMetadata { path, m in
            try m.addDevice(DeviceInfo(size: 10 << 30, name: "base"))
            try m.addDevice(DeviceInfo(size: 10 << 30, name: "snap", parentName: "base"))
            try m.addDevice(DeviceInfo(size: 1, name: "gone"))
            for state: DeviceState in [.creating, .created, .activating, .activated] { try m.transition("snap", to: state) }
            try m.markFaulty("base", error: "boom")
            try m.removeDevice("gone")
            m.close()
            let reopened = try PoolMetadata(path: path)
            defer { reopened.close() }
            #expect(try reopened.devices() == [
                DeviceInfo(deviceID: 1, size: 10 << 30, name: "base", state: .faulty, error: "boom"),
                DeviceInfo(deviceID: 2, size: 10 << 30, name: "snap", parentName: "base", state: .activated),
            ])
            #expect(try reopened.faultyIDs() == [1])
            #expect(try reopened.addDevice(DeviceInfo(size: 1, name: "n1")).deviceID == 3)  // freed id reused
            #expect(try reopened.addDevice(DeviceInfo(size: 1, name: "n2")).deviceID == 4)  // sequence continues
        }
    }

    @Test func commandLines() {
        #expect(DMSetup.createThin(pool: "pool", id: 3) == ["message", "pool", "0", "create_thin 3"])
        #expect(DMSetup.createSnapshot(pool: "pool", id: 4, origin: 3) == ["message", "pool", "0", "create_snap 4 3"])
        #expect(DMSetup.delete(pool: "pool", id: 4) == ["message", "pool", "0", "delete 4"])
        #expect(DMSetup.activate(pool: "pool", name: "pool-snap-7", id: 4, sizeBytes: 10 << 30)
            == ["create", "pool-snap-7", "--table", "0 20971520 thin /dev/mapper/pool 4"])
        #expect(DMSetup.thinTable(pool: "/dev/mapper/p", id: 1, sizeBytes: 1024, externalOrigin: "/dev/sdb")
            == "0 2 thin /dev/mapper/p 1 /dev/sdb")
        #expect(DMSetup.suspend("d") == ["suspend", "d"])
        #expect(DMSetup.resume("d") == ["resume", "d"])
        #expect(DMSetup.remove("d", options: [.retry, .deferred]) == ["remove", "--retry", "--deferred", "/dev/mapper/d"])
        #expect(DMSetup.remove("/dev/mapper/d", options: [.retry, .force]) == ["remove", "--retry", "--force", "/dev/mapper/d"])
        #expect(DMSetup.info("d") == [
            "info", "--columns", "--noheadings", "-o", "name,blkdevname,attr,major,minor,open,segments,events",
            "--separator", " ", "d",
        ])
        #expect(DMSetup.thinPoolTable(dataDevice: "/dev/loop1", metadataDevice: "/dev/loop0", dataSizeBytes: 1 << 30, blockSizeSectors: 128)
            == "0 2097152 thin-pool /dev/loop0 /dev/loop1 128 32768 1 skip_block_zeroing")
        #expect(DevmapperSnapshotter.mkfsCommand(.ext4, fsOptions: "", device: "/dev/mapper/x")
            == ("mkfs.ext4", ["-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", "/dev/mapper/x"]))
        #expect(DevmapperSnapshotter.mkfsCommand(.xfs, fsOptions: "", device: "/dev/mapper/x") == ("mkfs.xfs", ["/dev/mapper/x"]))
    }

    @Test func parsesDmsetupOutput() throws {
        let infos = try DMSetup.parseInfo("pool-snap-1 dm-1 L--w 253 1 0 1 0\npool-snap-2 dm-2 LIsr 253 2 3 1 7\n")
        #expect(infos.count == 2)
        #expect(infos[0].tableLive && !infos[0].suspended && !infos[0].readOnly && infos[0].openCount == 0)
        #expect(infos[1].tableInactive && infos[1].suspended && infos[1].readOnly && infos[1].openCount == 3)
        #expect(throws: BerthError.self) { try DMSetup.parseInfo("garbage") }
        let status = try DMSetup.parseStatus("0 204800 thin 17280 204799\n")
        #expect(status == DMSetup.Status(offset: 0, length: 204800, target: "thin", params: ["17280", "204799"]))
        #expect(try DMSetup.usedBytes(status) == 17280 * 512)
        #expect(throws: BerthError.self) { try DMSetup.parseStatus("0 1") }
        #expect(DMSetup.errno(fromOutput: "device-mapper: message ioctl on pool  failed: File exists\nCommand failed.\n") == EEXIST)
        #expect(DMSetup.errno(fromOutput: "device-mapper: remove ioctl on x failed: Device or resource busy\nCommand failed.\n") == EBUSY)
        #expect(DMSetup.errno(fromOutput: "Device /dev/mapper/x not found\nCommand failed.\n") == ENXIO)
        #expect(DMSetup.errno(fromOutput: "something else\nCommand failed.\n") == nil)
        #expect(DMSetup.errno(fromOutput: "one line") == nil)
    }
}
