import BerthCore
import Foundation
import GRDB
import GRDBSQLite

/// Keeps a WAL database's `-wal` file at its working size, so a commit overwrites blocks the file already has.
///
/// Why: with `synchronous = FULL` every commit ends in an fdatasync of the WAL. When the commit appended to the
/// file, that fdatasync must also write the inode's new size and the new blocks' allocation; when it overwrote
/// allocated blocks, only the data. On this machine's ext4 that is ~245 µs against ~165 µs per commit, and a
/// snapshot Prepare or Commit makes two (metadata and snapshotter). bbolt gets the same effect from its
/// preallocated file.
///
/// How: every connection sets SQLite's persistent-WAL flag, so the file is not deleted when the last connection
/// closes, and after opening, the file is extended with zeros up to one auto-checkpoint's worth of frames. SQLite
/// never reads past the frames its index names, and recovery stops at the first invalid frame: a zero frame names
/// page 0, which no valid frame does. So the padding is never taken for data, and SQLite restarts the log from its
/// start after each checkpoint, inside the padded size.
public enum WriteAheadLog {
    /// SQLite's default `wal_autocheckpoint`, in frames, plus a margin for the transaction that crosses it.
    static let frames = 1000 + 64

    /// Call from `Configuration.prepareDatabase`: the `-wal` file outlives the connection.
    public static func persist(_ db: Database) throws {
        guard !db.configuration.readonly else { return }
        var flag: CInt = 1
        let code = withUnsafeMutablePointer(to: &flag) {
            sqlite3_file_control(db.sqliteConnection, nil, SQLITE_FCNTL_PERSIST_WAL, $0)
        }
        guard code == SQLITE_OK else { throw DatabaseError(resultCode: ResultCode(rawValue: code)) }
    }

    /// Pads `<path>-wal` with zeros to its working size, holding the pool's writer so no commit appends meanwhile.
    public static func preallocate(_ pool: DatabasePool, path: String) throws {
        try pool.writeWithoutTransaction { db in
            let pageSize = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            let target = 32 + frames * (24 + pageSize)
            let fd = open(path + "-wal", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { _ = Glibc.close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, Int(st.st_size) < target else { return }
            let zeros = [UInt8](repeating: 0, count: 1 << 16)
            var offset = Int(st.st_size)
            while offset < target {
                let n = min(zeros.count, target - offset)
                let written = zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(offset)) }
                guard written > 0 else { return }
                offset += written
            }
            _ = fdatasync(fd)
        }
    }
}
