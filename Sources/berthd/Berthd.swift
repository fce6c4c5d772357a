import ArgumentParser
import BerthCore
import Foundation
import NIOCore
import NIOPosix

@main
struct Berthd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berthd",
        abstract: "Berth: a container engine that serves containerd's API.",
        subcommands: [Serve.self, ConfigCommand.self],
        defaultSubcommand: Serve.self)

    /// Runs Swift concurrency's jobs on NIO's event loops before anything is scheduled: a gRPC call is then handled
    /// on the loop that read it, without two thread hops per call between NIO and the global pool.
    static func main() async {
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Runs the daemon (the default subcommand).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the daemon (default).")

    @Option(name: [.short, .long], help: "Path to the configuration file.")
    var config: String = ConfigLoader.defaultPath

    @Option(name: [.short, .long], help: "Override [grpc] address.")
    var address: String?

    @Option(help: "Override root.")
    var root: String?

    @Option(help: "Override state.")
    var state: String?

    @Option(name: [.short, .long], help: "Override [debug] level (trace, debug, info, warn, error).")
    var logLevel: String?

    func run() async throws {
        do {
            try await Daemon.run(
                configPath: config, overrides: .init(address: address, root: root, state: state, logLevel: logLevel))
        } catch {
            Console.err("berthd: \(error)\n")
            throw ExitCode.failure
        }
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Print configurations.", subcommands: [Default.self, Dump.self])

    struct Default: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a complete, commented default config (version 3) with every compiled-in plugin.")

        func run() throws {
            try report { print(try ConfigRender.defaults(registrations: builtins), terminator: "") }
        }
    }

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective config after imports and defaults; warnings go to stderr.")

        @Option(name: [.short, .long], help: "Path to the configuration file.")
        var config: String = ConfigLoader.defaultPath

        func run() throws {
            try report {
                let loaded = try ConfigLoader.load(path: config, registrations: builtins)
                for warning in loaded.warnings {
                    Console.err("warning: \(warning)\n")
                }
                print(try ConfigRender.dump(loaded, registrations: builtins), terminator: "")
            }
        }
    }
}

/// Prints a BerthError as one line on stderr and exits non-zero.
func report(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as BerthError {
        Console.err("berthd: \(error)\n")
        throw ExitCode.failure
    }
}
