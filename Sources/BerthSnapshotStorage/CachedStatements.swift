import GRDB

/// Statements compiled once per connection and reused. The snapshot and metadata statements are small, so
/// compiling them (SQLite's parser, and GRDB's authorizer callback for every table and column) cost more than
/// running them; the SQL strings passed here are constants, so each connection's cache stays small.
extension Database {
    /// `execute(sql:arguments:)` for one statement, through the connection's statement cache.
    public func run(sql: String, arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }
}

extension Row {
    public static func fetchOne(
        _ db: Database, cachedSQL sql: String, arguments: StatementArguments = StatementArguments()
    ) throws -> Row? {
        try fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }

    public static func fetchCursor(
        _ db: Database, cachedSQL sql: String, arguments: StatementArguments = StatementArguments()
    ) throws -> RowCursor {
        try fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
    }

    public static func fetchAll(
        _ db: Database, cachedSQL sql: String, arguments: StatementArguments = StatementArguments()
    ) throws -> [Row] {
        try fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    }
}

extension DatabaseValueConvertible {
    /// The first row's first column; nil when there is no row or it is NULL.
    public static func fetchOne(
        _ db: Database, cachedSQL sql: String, arguments: StatementArguments = StatementArguments()
    ) throws -> Self? {
        try fetchOne(db.cachedStatement(sql: sql), arguments: arguments)
    }

    /// The first column of every row (NULLs fail, as GRDB's `fetchAll`).
    public static func fetchAll(
        _ db: Database, cachedSQL sql: String, arguments: StatementArguments = StatementArguments()
    ) throws -> [Self] {
        try fetchAll(db.cachedStatement(sql: sql), arguments: arguments)
    }
}
