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

    /// Runs `body` in a read transaction on the calling thread, for lookups of one record: `readReleasingReader`
    /// wakes three threads in turn (the pool's queue, the reader's queue, then the caller's loop), which costs more
    /// than such a lookup. BEGIN and COMMIT are cached statements, not parsed per call. Safe on the event loops: no
    /// reader is ever kept while it waits for a loop (see `readReleasingReader`), so one is free within a lookup.
    /// Whatever fails (the body, or COMMIT), the reader goes back to the pool outside any transaction: GRDB stops
    /// the process when a database access ends with one left open.
    public func readHere<T>(_ body: (Database) throws -> T) throws -> T {
        try unsafeRead { db in
            try db.cachedStatement(sql: "BEGIN DEFERRED TRANSACTION").execute()
            do {
                let value = try body(db)
                try db.cachedStatement(sql: "COMMIT").execute()
                return value
            } catch {
                if db.isInsideTransaction { try? db.cachedStatement(sql: "ROLLBACK").execute() }
                throw error
            }
        }
    }
}
