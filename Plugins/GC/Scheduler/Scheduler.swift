import BerthCore
import Logging
import Synchronization

/// `[plugins."io.containerd.gc.v1.scheduler"]`, containerd's options and defaults.
public struct SchedulerConfig: PluginConfig, Equatable {
    /// Largest share of time GC may pause the store: after a collection taking d, the next waits d / threshold.
    public var pauseThreshold: Double = 0.02
    /// Deletions that trigger a collection (0: every deletion schedules one, subject to the pause threshold).
    public var deletionThreshold: Int = 0
    /// Changes of any kind that trigger a collection (0: never by count).
    public var mutationThreshold: Int = 100
    /// Delay between a trigger and the collection (Go duration).
    public var scheduleDelay: String = "0s"
    /// Delay before the first collection after start (Go duration).
    public var startupDelay: String = "100ms"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case pauseThreshold = "pause_threshold"
        case deletionThreshold = "deletion_threshold"
        case mutationThreshold = "mutation_threshold"
        case scheduleDelay = "schedule_delay"
        case startupDelay = "startup_delay"
    }
}

public let registration = Registration(
    type: .gc, id: "scheduler", requires: [.type(.metadata)],
    summary: "Garbage collection scheduler: collects after deletions and changes, never pausing more than pause_threshold.",
    config: SchedulerConfig.self
) { ic, config in
    guard config.pauseThreshold > 0, config.pauseThreshold <= 0.5 else {
        throw BerthError.invalidArgument("pause_threshold must be in (0, 0.5], not \(config.pauseThreshold)")
    }
    guard let delay = GoDuration.duration(config.scheduleDelay), let startup = GoDuration.duration(config.startupDelay)
    else {
        throw BerthError.invalidArgument("schedule_delay and startup_delay must be Go durations")
    }
    let collector = try ic.single(.metadata, as: (any MetadataProvider).self).gc
    let scheduler = Scheduler(collector: collector, config: config, scheduleDelay: delay, logger: ic.logger)
    await collector.onMutation { deletion in scheduler.mutated(deletion: deletion) }
    scheduler.start(after: startup)
    return scheduler
}

/// Decides when to collect: counts changes and deletions, and runs collections one at a time in a background task.
public final class Scheduler: GCScheduler, Closable {
    struct State {
        var mutations = 0
        var deletions = 0
        var triggered = false
        var lastDuration: Duration = .zero
    }

    let collector: any GarbageCollector
    let config: SchedulerConfig
    let scheduleDelay: Duration
    let logger: Logger
    private let state = Mutex(State())
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let loop = Mutex<Task<Void, Never>?>(nil)
    private let running = CollectionGate()

    init(collector: any GarbageCollector, config: SchedulerConfig, scheduleDelay: Duration, logger: Logger) {
        self.collector = collector
        self.config = config
        self.scheduleDelay = scheduleDelay
        self.logger = logger
        (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Called by the metadata store after every committed change.
    func mutated(deletion: Bool) {
        let trigger = state.withLock { s -> Bool in
            s.mutations += 1
            if deletion { s.deletions += 1 }
            let byDeletion = deletion && (config.deletionThreshold == 0 || s.deletions >= config.deletionThreshold)
            let byMutation = config.mutationThreshold > 0 && s.mutations >= config.mutationThreshold
            if (byDeletion || byMutation) && !s.triggered {
                s.triggered = true
                return true
            }
            return false
        }
        if trigger { wake.yield() }
    }

    func start(after delay: Duration) {
        let task = Task { [weak self] in
            try? await Task.sleep(for: delay)
            await self?.runOnce()
            guard let wakes = self?.wakes else { return }
            for await _ in wakes {
                guard let self else { return }
                // Keep GC below pause_threshold of the time: wait lastDuration / threshold since the last one.
                let pause = self.state.withLock { $0.lastDuration } * (1 / self.config.pauseThreshold)
                try? await Task.sleep(for: max(self.scheduleDelay, pause))
                if Task.isCancelled { return }
                await self.runOnce()
            }
        }
        loop.withLock { $0 = task }
    }

    @discardableResult
    func runOnce() async -> GCStats? {
        do {
            return try await scheduleAndWait()
        } catch {
            logger.warning("garbage collection failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Runs a collection now (after any running one) and returns what it removed.
    public func scheduleAndWait() async throws(BerthError) -> GCStats {
        state.withLock {
            $0.mutations = 0
            $0.deletions = 0
            $0.triggered = false
        }
        let stats = try await running.run { () throws(BerthError) in try await collector.collect() }
        state.withLock { $0.lastDuration = stats.duration }
        logger.debug("garbage collected", metadata: [
            "content": "\(stats.removedContent)", "blobs": "\(stats.removedBlobs)", "leases": "\(stats.removedLeases)",
            "d": "\(stats.duration)",
        ])
        return stats
    }

    public func close() async throws {
        loop.withLock { $0?.cancel() }
        wake.finish()
    }
}

/// Serialises collections: one at a time, in call order.
actor CollectionGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws(BerthError) -> T) async throws(BerthError) -> T {
        while busy { await withCheckedContinuation { waiters.append($0) } }
        busy = true
        defer {
            busy = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
