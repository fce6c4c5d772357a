// Waiting helpers shared by the ttrpc, shim and other test targets: bounded polling (the bound only keeps a broken
// test from hanging) and a locked box for values collected from handlers and threads.
import Foundation

/// Thread-safe box for values tests collect from handlers and threads.
public final class Box<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    public init(_ value: T) { self.value = value }
    public var get: T { lock.withLock { value } }
    public func update(_ body: (inout T) -> Void) { lock.withLock { body(&value) } }
}

/// Polls `condition` every 10 ms until it holds or `limit` seconds pass. Async, so that waiting does not block one
/// of the few threads of the concurrency pool.
public func eventually(_ limit: Double = 20, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(limit)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// The same for synchronous code (clean-up in `defer`).
public func eventuallyBlocking(_ limit: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(limit)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
