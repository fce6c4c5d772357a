import BerthCore
import Foundation
import Testing

@testable import BerthMetadataPlugin

func temporaryDatabase() throws -> String {
    let dir = NSTemporaryDirectory() + "berth-meta-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/meta.db"
}

@Suite struct MetadataStoreTests {
    @Test func createGetListDelete() async throws {
        let store = try MetadataStore(path: try temporaryDatabase())
        try await store.create("b", labels: ["k": "v"])
        try await store.create("a", labels: [:])
        #expect(try await store.list() == ["a", "b"])
        #expect(try await store.labels("b") == ["k": "v"])
        #expect(try await store.exists("a"))
        // containerd answers an unknown namespace's labels with none rather than NotFound.
        #expect(try await store.labels("never-created") == [:])
        try await store.delete("a")
        #expect(try await store.list() == ["b"])
    }

    @Test func errorsCarryContainerdCodes() async throws {
        let store = try MetadataStore(path: try temporaryDatabase())
        try await store.create("x", labels: [:])
        await #expect { try await store.create("x", labels: [:]) } throws: { ($0 as? BerthError)?.code == .alreadyExists }
        await #expect { try await store.create("no/slash", labels: [:]) } throws: { ($0 as? BerthError)?.code == .invalidArgument }
        await #expect { try await store.delete("missing") } throws: { ($0 as? BerthError)?.code == .notFound }
        await #expect {
            try await store.create("big", labels: ["k": String(repeating: "v", count: 5000)])
        } throws: { ($0 as? BerthError)?.code == .invalidArgument }
        await #expect {
            _ = try await store.update("x", labels: [:], paths: ["name"])
        } throws: { ($0 as? BerthError)?.code == .invalidArgument }
    }

    @Test func updateWithFieldPaths() async throws {
        let store = try MetadataStore(path: try temporaryDatabase())
        try await store.create("ns", labels: ["a": "1", "b": "2"])
        // Only the named key changes; a key absent from the request is removed.
        #expect(try await store.update("ns", labels: ["a": "10", "c": "3"], paths: ["labels.a", "labels.b"]) == ["a": "10"])
        // "labels" (or no paths) replaces the whole set.
        #expect(try await store.update("ns", labels: ["z": "26"], paths: ["labels"]) == ["z": "26"])
        #expect(try await store.update("ns", labels: ["y": "25"], paths: []) == ["y": "25"])
        // Like containerd's SetLabel, labelling an unknown namespace creates it.
        #expect(try await store.update("fresh", labels: ["k": "v"], paths: ["labels.k"]) == ["k": "v"])
        #expect(try await store.exists("fresh"))
    }

    @Test func deletionChecksVetoNonEmptyNamespaces() async throws {
        let store = try MetadataStore(path: try temporaryDatabase())
        try await store.create("busy", labels: [:])
        try await store.create("idle", labels: [:])
        await store.addDeletionCheck { name in name == "busy" ? "containers" : nil }
        await #expect { try await store.delete("busy") } throws: { error in
            (error as? BerthError)?.code == .failedPrecondition
                && "\(error)".contains("namespace \"busy\" must be empty, but it still has containers")
        }
        try await store.delete("idle")
        #expect(try await store.list() == ["busy"])
    }

    @Test func stateSurvivesReopen() async throws {
        let path = try temporaryDatabase()
        do {
            let store = try MetadataStore(path: path)
            try await store.create("persist", labels: ["x": "y"])
            try await store.close()
        }
        let reopened = try MetadataStore(path: path)
        #expect(try await reopened.labels("persist") == ["x": "y"])
        // Migrations are recorded and not re-run: opening again is fine.
        _ = try MetadataStore(path: path)
    }

    @Test func pluginRejectsBadSharingPolicy() async throws {
        var config = MetadataConfig()
        config.contentSharingPolicy = "everyone"
        let loaded = try ConfigLoader.load(
            text: "version = 3\n[plugins.\"io.containerd.metadata.v1.bolt\"]\ncontent_sharing_policy = \"everyone\"\n",
            file: "m.toml", registrations: [BerthMetadataPlugin.registration])
        #expect((loaded.plugins["io.containerd.metadata.v1.bolt"] as? MetadataConfig) == config)
    }
}
