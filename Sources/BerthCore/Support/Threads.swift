#if canImport(Glibc)
    import Glibc
#endif

/// Starts a thread of its own running `body`, for work that blocks or must not wait on the Swift executors.
/// The thread is joinable (`pthread_join`) unless `detached`.
@discardableResult
public func startThread(detached: Bool = false, _ body: @escaping @Sendable () -> Void) throws(BerthError) -> pthread_t {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, &attributes, { argument in
        guard let argument else { return nil }
        Unmanaged<Box>.fromOpaque(argument).takeRetainedValue().body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        throw .internalError("starting a thread: \(FileSystem.errnoMessage(result))")
    }
    return thread
}
