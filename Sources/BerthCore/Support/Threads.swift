#if canImport(Glibc)
    import Glibc
#endif
import BerthThreads

/// Starts a thread of its own running `body`, for work that blocks or must not wait on the Swift executors.
/// The thread is joinable (`pthread_join`) unless `detached`.
@discardableResult
public func startThread(detached: Bool = false, _ body: @escaping @Sendable () -> Void) throws(BerthError) -> pthread_t {
    do {
        return try PosixThread.start(detached: detached, body)
    } catch {
        throw .internalError("starting a thread: \(FileSystem.errnoMessage(error.code))")
    }
}
