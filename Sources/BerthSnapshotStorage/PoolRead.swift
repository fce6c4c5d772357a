import GRDB

extension DatabasePool {
    /// Runs `body` in a read transaction on a reader connection, for every SQLite store of the daemon.
    ///
    /// Uses GRDB's callback `asyncRead`, which hands the reader back to the pool on the reader's own queue. GRDB's
    /// `async` read keeps the reader until the awaiting task resumes on the global executor, which in berthd is the
    /// NIO loops; with every reader held that way and both loops blocked in a synchronous read (or in `close()`)
    /// waiting for a reader, nothing could run again (berthd stopped answering under 20 concurrent `ctr run`).
    public func readReleasingReader<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            asyncRead { database in
                continuation.resume(returning: Result { try body(database.get()) })
            }
        }
        return try result.get()
    }
}
