#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Dispatch
import Foundation
import Logging

/// The daemon's life: config, plugins in graph order, serve until SIGTERM/SIGINT, close in reverse order.
enum Daemon {
    struct Overrides {
        var address: String?
        var root: String?
        var state: String?
        var logLevel: String?
    }

    static func run(configPath: String, overrides: Overrides) async throws(BerthError) {
        let started = ContinuousClock.now
        var loaded = try ConfigLoader.load(path: configPath, registrations: builtins)
        if let address = overrides.address { loaded.daemon.grpc.address = address }
        if let root = overrides.root { loaded.daemon.root = root }
        if let state = overrides.state { loaded.daemon.state = state }
        let levelName = overrides.logLevel ?? loaded.daemon.debug.level
        guard let level = Logs.level(levelName) else {
            throw .invalidArgument("unknown log level \"\(levelName)\" (trace, debug, info, warn, error)")
        }
        guard ["", "text", "json"].contains(loaded.daemon.debug.format) else {
            throw .invalidArgument("[debug] format must be \"text\" or \"json\", not \"\(loaded.daemon.debug.format)\"")
        }
        Logs.bootstrap(level: level, json: loaded.daemon.debug.format == "json")
        let logger = Logger(label: "berthd")
        for warning in loaded.warnings { logger.warning("config: \(warning)") }

        let config = loaded.daemon
        try FileSystem.makeDirectories(config.root, mode: 0o711)
        try FileSystem.makeDirectories(config.state, mode: 0o711)
        if config.oomScore != 0 { setOOMScore(config.oomScore, logger: logger) }

        // Catch the signals before anything listens, so an early SIGTERM still shuts down cleanly.
        let signals = SignalWaiter([SIGTERM, SIGINT])

        let ordered = try PluginGraph.order(builtins, disabled: Set(config.disabledPlugins))
        let properties = DaemonProperties(config: config, logger: logger)
        let plugins = await PluginLoader.load(ordered, configs: loaded.plugins, properties: properties)
        do {
            // A listener that cannot serve (socket taken, bad address) leaves a daemon nobody can reach: required.
            let listeners = ordered.filter { $0.type == .server }.map(\.uri)
            try PluginLoader.checkRequired(config.requiredPlugins + listeners, in: plugins)
        } catch {
            await plugins.closeAll(logger: logger)
            throw error
        }
        logger.info("berthd successfully booted", metadata: [
            "version": "\(BuildInfo.version)", "in": "\(ContinuousClock.now - started)",
            "address": "\(config.grpc.address)",
        ])

        let signal = await signals.next()
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        await plugins.closeAll(logger: logger)
        logger.info("stopped")
    }

    /// containerd's `oom_score`: written to /proc/self/oom_score_adj. Lowering it needs CAP_SYS_RESOURCE; without
    /// it berthd runs on with a warning, as containerd does.
    static func setOOMScore(_ score: Int, logger: Logger) {
        do {
            try FileSystem.overwrite("/proc/self/oom_score_adj", "\(score)")
        } catch {
            logger.warning("cannot set oom_score_adj", metadata: ["score": "\(score)", "error": "\(error)"])
        }
    }
}

/// Turns SIGTERM/SIGINT into an awaitable value instead of the default action (which would kill the process
/// without closing plugins or removing the socket).
final class SignalWaiter {
    private let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        self.sources = signals.map { number in
            Glibc.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    func next() async -> Int32 {
        for await signal in stream { return signal }
        return SIGTERM
    }
}
