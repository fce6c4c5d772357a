#if canImport(Glibc)
    import Glibc
#endif

/// Threads of their own for long CPU- and syscall-bound work (applying a layer: inflate, hashing, thousands of
/// file creations). In berthd the Swift tasks run on the event loops that also carry every connection's I/O; a
/// layer apply there holds a loop for seconds, stalling the downloads and progress streams it shares the loop
/// with. Work run under `WorkThreads.run` prefers these threads; its awaits on actors still hop to them and back.
public final class WorkThreads: TaskExecutor, @unchecked Sendable {
    /// As many threads as online processors, at least two.
    public static let shared = WorkThreads(count: max(2, sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let available = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var head = 0
    /// How many threads started; with none, `run` keeps work on the default executor rather than queue it forever.
    private(set) var started = 0

    init(count: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(available, nil)
        for _ in 0..<count where (try? startThread(detached: true) { [self] in serve() }) != nil { started += 1 }
    }

    /// Runs `body` preferring these threads.
    public static func run<T, Failure: Error>(_ body: () async throws(Failure) -> T) async throws(Failure) -> T {
        try await withTaskExecutorPreference(shared.started > 0 ? shared : nil, operation: body)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(available)
        pthread_mutex_unlock(mutex)
    }

    private func serve() {
        let executor = asUnownedTaskExecutor()
        while true {
            pthread_mutex_lock(mutex)
            while head == jobs.count { pthread_cond_wait(available, mutex) }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head >= jobs.count / 2 {
                jobs.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: executor)
        }
    }
}
