import BerthAPI
import BerthCore
import BerthGRPC
import BerthTestSupport
import Foundation
import SwiftProtobuf
import Testing

/// A file of random bytes and its sha256 digest.
func randomFile(_ path: String, megabytes: Int) throws -> String {
    let r = try execute("/bin/sh", ["-c", "head -c \(megabytes)M /dev/urandom > \(path) && sha256sum \(path)"], timeout: 120)
    guard r.succeeded, let hex = r.stdout.split(separator: " ").first else { throw DaemonFailed(log: r.stderr) }
    return "sha256:\(hex)"
}

/// `ctr` with stdin from a file.
func ctrWithInput(_ d: Daemon, _ arguments: [String], input: String, namespace: String = "default") throws -> CommandResult {
    try execute("/bin/sh", ["-c", "exec \(ctrPath) --address \(d.socket) --namespace \(namespace) \(arguments.joined(separator: " ")) < \(input)"], timeout: 300)
}

/// Creates an image record through the Images API (pull arrives with the Images issue).
func createImage(_ d: Daemon, name: String, digest: String, size: Int64, namespace: String = "default", labels: [String: String] = [:]) async throws {
    try await BerthConnection.with(address: d.socket, namespace: namespace) { c in
        var request = Containerd_Services_Images_V1_CreateImageRequest()
        request.image.name = name
        request.image.labels = labels
        request.image.target.mediaType = "application/vnd.oci.image.manifest.v1+json"
        request.image.target.digest = digest
        request.image.target.size = size
        _ = try await Containerd_Services_Images_V1_Images.Client(wrapping: c.client).create(request, metadata: c.metadata)
    }
}

@Suite(.serialized) struct ContentCtrTests {
    @Test func ingestListGetLabelRemove() throws {
        try withDaemon(extra: quietGC) { d in
            let file = d.directory + "/blob"
            let digest = try randomFile(file, megabytes: 3)
            let ingest = try ctrWithInput(d, ["content", "ingest", "ref1"], input: file)
            #expect(ingest.succeeded, "\(ingest.stderr)")
            let ls = try d.ctr(["content", "ls"])
            #expect(ls.stdout.contains(digest), "\(ls.stdout)")
            let get = try execute("/bin/sh", ["-c", "\(ctrPath) --address \(d.socket) content get \(digest) | sha256sum"])
            #expect("sha256:" + (get.stdout.split(separator: " ").first ?? "") == digest)
            #expect(try d.ctr(["content", "label", digest, "team=a", "containerd.io/gc.root=x"]).succeeded)
            // ctr prints labels in Go map order, so look for each one.
            let labelled = try d.ctr(["content", "ls"]).stdout
            #expect(labelled.contains("containerd.io/gc.root=x") && labelled.contains("team=a"), "\(labelled)")
            #expect(try d.berth(["content", "label", digest, "team="]).stdout == "containerd.io/gc.root=x\n")
            #expect(try d.ctr(["content", "rm", digest]).succeeded)
            #expect(!(try d.ctr(["content", "ls"]).stdout.contains(digest)))
            let missing = try d.berth(["content", "rm", digest])
            #expect(missing.stderr.contains("not found"), "\(missing.stderr)")
        }
    }

    @Test func digestMismatchCommitsNothing() throws {
        try withDaemon { d in
            let file = d.directory + "/blob"
            _ = try randomFile(file, megabytes: 1)
            let wrong = "sha256:" + String(repeating: "0", count: 64)
            let r = try ctrWithInput(d, ["content", "ingest", "--expected-digest", wrong, "bad"], input: file)
            #expect(!r.succeeded)
            #expect(r.stderr.contains("failed precondition") || r.stderr.contains("unexpected commit digest"), "\(r.stderr)")
            #expect(try d.ctr(["content", "ls", "-q"]).stdout.isEmpty)
            let size = try d.ctr(["content", "ingest", "--expected-size", "5", "short"], timeout: 30)
            _ = size
            #expect(try d.ctr(["content", "ls", "-q"]).stdout.isEmpty)
        }
    }

    @Test func activeIngestsAndRefLock() throws {
        try withDaemon(extra: quietGC) { d in
            let fifo = d.directory + "/fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let first = try TestProcess(
                "/bin/sh", ["-c", "exec \(ctrPath) --address \(d.socket) content ingest held < \(fifo)"], outputPath: nil)
            let feeder = FileHandle(forWritingAtPath: fifo)
            feeder?.write(Data(repeating: 7, count: 4096))
            var active = ""
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline, !active.contains("held") {
                active = try d.ctr(["content", "active"]).stdout
                usleep(100_000)
            }
            #expect(active.contains("held"), "\(active)")
            // ctr waits for a locked ref (it retries Unavailable); berth reports it.
            let second = try execute("/bin/sh", ["-c", "echo x | \(binDirectory)/berth --address \(d.socket) content ingest held"], timeout: 30)
            #expect(!second.succeeded)
            #expect(second.stderr.contains("ref default/held locked") || second.stderr.contains("locked"), "\(second.stderr)")
            try feeder?.close()
            first.waitUntilExit()
            #expect(first.terminationStatus == 0)
            let digest = try execute("/bin/sh", ["-c", "head -c 4096 /dev/zero | tr '\\0' '\\7' | sha256sum"]).stdout.prefix(64)
            #expect(try d.ctr(["content", "ls", "-q"]).stdout.contains(String(digest)))
        }
    }

    @Test func leasesCreateListRemove() throws {
        try withDaemon { d in
            #expect(try d.ctr(["leases", "create", "--id", "build-1", "owner=ci"]).succeeded)
            let ls = try d.ctr(["leases", "ls"])
            #expect(ls.stdout.contains("build-1"), "\(ls.stdout)")
            #expect(ls.stdout.contains("owner=ci"))
            let duplicate = try d.ctr(["leases", "create", "--id", "build-1"])
            #expect(!duplicate.succeeded)
            #expect(duplicate.stderr.contains("already exists"))
            #expect(try d.ctr(["leases", "rm", "build-1"]).succeeded)
            #expect(!(try d.ctr(["leases", "ls"]).stdout.contains("build-1")))
            let created = try d.berth(["leases", "create", "--expiration", "1h"])
            #expect(created.succeeded)
            #expect(try d.berth(["leases", "ls"]).stdout.contains("containerd.io/gc.expire="))
        }
    }

    @Test func imagesThroughTheAPIAndCtr() async throws {
        let d = try Daemon()
        defer { d.remove() }
        let events = try Capture(ctrPath, ["--address", d.socket, "events", "topic~=|^/images/|"])
        defer { events.stop() }
        let file = d.directory + "/manifest"
        let digest = try randomFile(file, megabytes: 1)
        #expect(try ctrWithInput(d, ["content", "ingest", "m"], input: file).succeeded)
        var n = 0
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, !events.text.contains("/images/create") {
            n += 1
            try await createImage(d, name: "example.com/app:\(n)", digest: digest, size: 1 << 20, labels: ["v": "\(n)"])
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(events.text.contains("/images/create {\"name\":\"example.com/app:"))
        let ls = try d.ctr(["images", "ls"])
        #expect(ls.stdout.contains("example.com/app:1"), "\(ls.stdout)")
        #expect(try d.ctr(["images", "label", "example.com/app:1", "tier=prod"]).succeeded)
        #expect(try d.berth(["images", "ls"]).stdout.contains("tier=prod"))
        await #expect(throws: (any Error).self) {
            try await createImage(d, name: "example.com/app:1", digest: digest, size: 1)
        }
        for i in 1...n { #expect(try d.ctr(["images", "rm", "example.com/app:\(i)"]).succeeded) }
        #expect(try d.ctr(["images", "ls", "-q"]).stdout.isEmpty)
    }
}
