import ArgumentParser
import BerthAPI
import BerthCore
import BerthGRPC
import BerthOCI
import Foundation
import SwiftProtobuf

/// Flags shared by the registry commands: how to reach the registry and who to be.
struct RegistryFlags: ParsableArguments {
    @Flag(help: "Use HTTP instead of HTTPS for the registry.") var plainHttp = false
    @Option(name: [.short, .long], help: "User (and password, USER[:PASSWORD]) for the registry; prompts for a missing password.")
    var user: String?
    @Option(help: "Directory of hosts.toml files (containerd's config_path layout).") var hostsDir: String?

    /// The flags as plain values, prompting (without echo) for a password `--user` left out.
    func resolve() throws -> RegistryOptions {
        var options = RegistryOptions(plainHTTP: plainHttp, hostsDir: hostsDir)
        if let user {
            if let colon = user.firstIndex(of: ":") {
                options.username = String(user[..<colon])
                options.secret = String(user[user.index(after: colon)...])
            } else {
                options.username = user
                options.secret = try PasswordPrompt.read("Password: ")
            }
        }
        return options
    }
}

/// How to reach a registry and who to be there.
struct RegistryOptions: Sendable {
    var plainHTTP = false
    var hostsDir: String?
    var username: String?
    var secret = ""

    /// The registry end; with credentials, an auth stream answers the daemon's questions (never in the request).
    func registry(_ reference: String, opener: StreamOpener) async throws -> Containerd_Types_Transfer_OCIRegistry {
        var message = Containerd_Types_Transfer_OCIRegistry()
        message.reference = reference
        var resolver = Containerd_Types_Transfer_RegistryResolver()
        if plainHTTP { resolver.defaultScheme = "http" }
        if let hostsDir { resolver.hostDir = hostsDir }
        if let username {
            let secret = self.secret
            let stream = try await opener.open(TransferMessages.streamID("creds"))
            resolver.authStream = stream.id
            await opener.spawn {
                for try await request in stream.inbound {
                    guard TransferMessages.decode(request, as: Containerd_Types_Transfer_AuthRequest.self) != nil else {
                        continue
                    }
                    var response = Containerd_Types_Transfer_AuthResponse()
                    response.authType = .credentials
                    response.username = username
                    response.secret = secret
                    stream.send(response)
                }
            }
        }
        message.resolver = resolver
        return message
    }
}

/// Reads a password from the terminal with echo off (or a line of stdin when there is no terminal).
enum PasswordPrompt {
    static func read(_ prompt: String) throws -> String {
        let fd = open("/dev/tty", O_RDWR)
        guard fd >= 0 else { return readLine(strippingNewline: true) ?? "" }
        defer { close(fd) }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }
        var saved = termios()
        tcgetattr(fd, &saved)
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(fd, TCSANOW, &silent)
        defer {
            tcsetattr(fd, TCSANOW, &saved)
            _ = write(fd, "\n", 1)
        }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { bytes.append(byte) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Platform flags as API messages.
enum PlatformFlags {
    static func parse(_ specifiers: [String]) throws -> [Containerd_Types_Platform] {
        try specifiers.map { try message(Platforms.parse($0)) }
    }

    static func message(_ platform: OCIPlatform) -> Containerd_Types_Platform {
        var out = Containerd_Types_Platform()
        out.os = platform.os
        out.architecture = platform.architecture
        out.variant = platform.variant ?? ""
        return out
    }

    static func unpack(_ platform: Containerd_Types_Platform, _ snapshotter: String) -> Containerd_Types_Transfer_UnpackConfiguration {
        var out = Containerd_Types_Transfer_UnpackConfiguration()
        out.platform = platform
        out.snapshotter = snapshotter
        return out
    }
}

/// Runs a transfer with progress shown: opens the progress stream, lets `prepare` add the ends.
enum TransferRunner {
    static func run(
        _ global: GlobalOptions, progressToStandardError: Bool = false,
        prepare: @escaping @Sendable (StreamOpener) async throws -> (source: Google_Protobuf_Any, destination: Google_Protobuf_Any)
    ) async throws {
        let display = ProgressDisplay(toStandardError: progressToStandardError)
        try await global.connect { connection in
            try await TransferCall.run(connection) { opener in
                let progress = try await opener.open(TransferMessages.streamID("progress"))
                await opener.spawn {
                    for try await any in progress.inbound {
                        if let p = TransferMessages.decode(any, as: Containerd_Types_Transfer_Progress.self) { display.update(p) }
                    }
                }
                let (source, destination) = try await prepare(opener)
                var request = Containerd_Services_Transfer_V1_TransferRequest()
                request.source = source
                request.destination = destination
                request.options.progressStream = progress.id
                return request
            }
        }
        display.finish()
    }
}

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull", abstract: "Pull an image from a registry into berthd (the daemon fetches and unpacks).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Option(help: "Platform to pull (repeatable; default the host's).") var platform: [String] = []
    @Flag(help: "Pull every platform (nothing is unpacked).") var allPlatforms = false
    @Option(help: "Snapshotter to unpack into (default the daemon's).") var snapshotter = ""
    @Flag(help: "Fetch only; do not unpack.") var noUnpack = false
    @Argument(help: "Image reference, e.g. docker.io/library/busybox:latest.") var reference: String

    func run() async throws {
        if allPlatforms, !platform.isEmpty { throw ValidationError("cannot specify both --platform and --all-platforms") }
        let name = try Reference.parseDocker(reference).description
        var platforms = try PlatformFlags.parse(platform)
        if platforms.isEmpty, !allPlatforms { platforms = [PlatformFlags.message(Platforms.host)] }
        var store = Containerd_Types_Transfer_ImageStore()
        store.name = name
        store.platforms = platforms
        store.allMetadata = true
        if !noUnpack { store.unpacks = platforms.map { PlatformFlags.unpack($0, snapshotter) } }
        let registry = try self.registry.resolve()
        let destination = TransferMessages.any(store)
        try await TransferRunner.run(global) { opener in
            (TransferMessages.any(try await registry.registry(name, opener: opener)), destination)
        }
    }
}

struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push", abstract: "Push an image from berthd to a registry.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var registry: RegistryFlags
    @Option(help: "Platform to push (repeatable; default every platform the image has).") var platform: [String] = []
    @Argument(help: "Remote reference to push to.") var reference: String
    @Argument(help: "Local image name (default the remote reference).") var local: String?

    func run() async throws {
        let remote = try Reference.parseDocker(reference).description
        var store = Containerd_Types_Transfer_ImageStore()
        store.name = local ?? remote
        store.platforms = try PlatformFlags.parse(platform)
        let registry = try self.registry.resolve()
        let source = TransferMessages.any(store)
        try await TransferRunner.run(global) { opener in
            (source, TransferMessages.any(try await registry.registry(remote, opener: opener)))
        }
    }
}
