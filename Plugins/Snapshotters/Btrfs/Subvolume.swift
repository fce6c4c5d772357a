#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import CBtrfsUtil

/// btrfs subvolume operations through libbtrfsutil (what containerd's btrfs package does with ioctls), with
/// errors mapped to BerthError: ENOENT → NotFound, EEXIST → AlreadyExists, the rest → Internal.
enum Subvolume {
    /// `btrfs subvolume create <path>`.
    static func create(_ path: String) throws(BerthError) {
        try check("create subvolume", path) { btrfs_util_create_subvolume(path, 0, nil, nil) }
    }

    /// `btrfs subvolume snapshot [-r] <source> <path>`.
    static func snapshot(from source: String, to path: String, readOnly: Bool) throws(BerthError) {
        let flags = readOnly ? Int32(BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY) : 0
        try check("snapshot subvolume \(source) to", path) { btrfs_util_create_snapshot(source, path, flags, nil, nil) }
    }

    /// `btrfs subvolume delete <path>`, including subvolumes nested below it (a container may create some).
    static func delete(_ path: String) throws(BerthError) {
        try check("delete subvolume", path) {
            btrfs_util_delete_subvolume(path, Int32(BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE))
        }
    }

    /// The subvolume id (what `subvolid=` mounts).
    static func id(_ path: String) throws(BerthError) -> UInt64 {
        var id: UInt64 = 0
        try check("subvolume id of", path) { btrfs_util_subvolume_id(path, &id) }
        return id
    }

    /// Whether `path` is the root of a subvolume (false when absent or a plain directory).
    static func isSubvolume(_ path: String) -> Bool {
        btrfs_util_is_subvolume(path) == BTRFS_UTIL_OK
    }

    /// `btrfs property set <path> ro true`.
    static func setReadOnly(_ path: String) throws(BerthError) {
        try check("set read-only", path) { btrfs_util_set_subvolume_read_only(path, true) }
    }

    /// Whether `path` is a read-only subvolume.
    static func isReadOnly(_ path: String) throws(BerthError) -> Bool {
        var readOnly = false
        try check("read-only flag of", path) { btrfs_util_get_subvolume_read_only(path, &readOnly) }
        return readOnly
    }

    private static func check(_ what: String, _ path: String, _ call: () -> btrfs_util_error) throws(BerthError) {
        errno = 0
        let result = call()
        guard result != BTRFS_UTIL_OK else { return }
        let code = errno
        let library = btrfs_util_strerror(result).map { String(cString: $0) } ?? "error \(result.rawValue)"
        let message = "btrfs: \(what) \(path): \(library)" + (code != 0 ? ": \(FileSystem.errnoMessage(code))" : "")
        switch code {
        case ENOENT: throw .notFound(message)
        case EEXIST: throw .alreadyExists(message)
        default: throw .internalError(message)
        }
    }
}
