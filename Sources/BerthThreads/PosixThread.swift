#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Threads of their own, for work that blocks (reads, waits, fsyncs) and must not hold a Swift executor. The one
/// pthread_create wrapper shared by berthd's core, ttrpc and berth-shim; each maps a failure to its own error.
public enum PosixThread {
    /// pthread_create's error number.
    public struct StartError: Error {
        public let code: Int32
    }

    /// Starts a thread running `body`; joinable (`pthread_join`) unless `detached`. Without `stackSize`, the
    /// system's default stack. On failure `body` has not run and is released.
    @discardableResult
    public static func start(detached: Bool, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void)
        throws(StartError) -> pthread_t
    {
        final class Box: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { argument in
            guard let argument else { return nil }
            Unmanaged<Box>.fromOpaque(argument).takeRetainedValue().body()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Box>.fromOpaque(context).release()
            throw StartError(code: result)
        }
        return thread
    }
}
