#if canImport(Glibc)
    import Glibc
#endif
import BerthCore

/// A regular file of a layer, read whole, for a writer thread to create: new name `name` in the open
/// directory `directory` (a descriptor the job owns), then contents, owner, xattrs, mode and times.
struct FileJob: @unchecked Sendable {
    var directory: Int32
    var name: String
    var entry: TarEntry
    var data: [UInt8]
    /// Prefix of error messages: `<label>: entry "<name>"`.
    var context: String
}

/// The writer threads of one apply. Creating a small file on ext4 without a journal soon after many were deleted
/// is mostly kernel CPU (inode allocation checks each free inode of the group in the inode table for a recent
/// deletion): ~300 µs a file, so a layer of many small files is bound by one core. Handing the files
/// to a few threads of their own (not the Swift cooperative pool, which must not block) spreads that over the
/// cores. Jobs only ever create new names; the extractor drains the queue before anything that removes, links
/// or looks up a name a job may still be creating, so the result is the sequential apply's.
final class FileWriters: @unchecked Sendable {
    /// Files up to this size go to the threads; larger ones stream on the apply's own thread.
    static let maxJobBytes = 1 << 20
    static let maxQueuedJobs = 64
    static let maxQueuedBytes = 8 << 20

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when a job is queued or the writers must stop.
    private let work = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Signalled when a job finishes.
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [FileJob] = []
    private var head = 0
    /// Jobs queued or running, and their bytes.
    private var outstanding = 0
    private var outstandingBytes = 0
    private var failure: BerthError?
    private var stopping = false
    private var threads: [pthread_t] = []

    /// Starts `count` writer threads (at least one).
    init(count: Int) throws(BerthError) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(work, nil)
        pthread_cond_init(done, nil)
        for _ in 0..<max(1, count) {
            do {
                threads.append(try startThread { [self] in run() })
            } catch {
                close()
                throw error
            }
        }
    }

    deinit {
        pthread_cond_destroy(work)
        pthread_cond_destroy(done)
        pthread_mutex_destroy(mutex)
        work.deallocate()
        done.deallocate()
        mutex.deallocate()
    }

    /// As many writers as online processors, at most four.
    static var defaultCount: Int { min(4, max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Queues `job`, first waiting while the queue is full. Throws the first failure of an earlier job (the
    /// job is then not queued and its directory is closed).
    func submit(_ job: FileJob) throws(BerthError) {
        pthread_mutex_lock(mutex)
        while failure == nil
            && (outstanding >= Self.maxQueuedJobs || outstandingBytes + job.data.count > Self.maxQueuedBytes)
            && outstanding > 0
        {
            pthread_cond_wait(done, mutex)
        }
        if let failure {
            pthread_mutex_unlock(mutex)
            Glibc.close(job.directory)
            throw failure
        }
        queue.append(job)
        outstanding += 1
        outstandingBytes += job.data.count
        pthread_cond_signal(work)
        pthread_mutex_unlock(mutex)
    }

    /// Waits until every queued job has finished; throws the first failure.
    func drain() throws(BerthError) {
        pthread_mutex_lock(mutex)
        while outstanding > 0 { pthread_cond_wait(done, mutex) }
        let failure = self.failure
        pthread_mutex_unlock(mutex)
        if let failure { throw failure }
    }

    /// Stops and joins the threads; jobs not started are dropped (their directories closed).
    func close() {
        pthread_mutex_lock(mutex)
        stopping = true
        for job in queue[head...] { Glibc.close(job.directory) }
        outstanding -= queue.count - head
        queue.removeAll()
        head = 0
        pthread_cond_broadcast(work)
        pthread_mutex_unlock(mutex)
        for thread in threads { pthread_join(thread, nil) }
        threads.removeAll()
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            while head == queue.count && !stopping { pthread_cond_wait(work, mutex) }
            if head == queue.count { break }
            let job = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            let skip = failure != nil
            pthread_mutex_unlock(mutex)
            let error = skip ? nil : Self.write(job)
            Glibc.close(job.directory)
            pthread_mutex_lock(mutex)
            if let error, failure == nil { failure = error }
            outstanding -= 1
            outstandingBytes -= job.data.count
            pthread_cond_broadcast(done)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Creates the file and sets its metadata as `Extractor.setMetadata` does, through the open descriptor.
    static func write(_ job: FileJob) -> BerthError? {
        func failed(_ what: String, _ code: Int32 = errno) -> BerthError {
            .internalError("\(job.context): \(what): \(FileSystem.errnoMessage(code))")
        }
        let entry = job.entry
        let fd = openat(job.directory, job.name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return failed("create") }
        defer { Glibc.close(fd) }
        guard FileSystem.writeAll(fd, job.data) else { return failed("write") }
        guard fchown(fd, uid_t(entry.uid), gid_t(entry.gid)) == 0 else { return failed("chown") }
        if !entry.xattrs.isEmpty {
            let target = RootFS.procPath(job.directory, job.name)
            for key in entry.xattrs.keys.sorted() {
                let code = Xattr.set(target, key, entry.xattrs[key] ?? [])
                if code != 0 && code != EOPNOTSUPP { return failed("setxattr \(key)", code) }
            }
        }
        guard fchmod(fd, mode_t(entry.mode & 0o7777)) == 0 else { return failed("chmod") }
        let time = timespec(tv_sec: Int(entry.mtime), tv_nsec: Int(entry.mtimeNanoseconds))
        var times = [time, time]
        guard futimens(fd, &times) == 0 else { return failed("set times") }
        return nil
    }
}
