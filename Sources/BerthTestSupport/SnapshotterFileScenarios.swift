#if canImport(Glibc)
    import Glibc
#endif
import BerthCore
import Foundation

/// Scenarios about what children and views see of their parents' files: updates, deletions (overlay whiteouts),
/// renames, owners, modes, read-only views and deep chains.
extension SnapshotterScenario {
    func layerFileUpdate(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try write(dir + "/foo", "foo\n")
            try makeDirectory(dir + "/dir")
            try write(dir + "/dir/a", "a\n")
        }
        try await layer(s, "update", parent: "base") { dir in
            try write(dir + "/foo", "changed\n")
            try write(dir + "/dir/a", "A\n", mode: 0o600)
        }
        let top = try await s.view("top", parent: "update", labels: [:])
        try await mounted(top, "top") { dir in
            try expectFile(dir + "/foo", "changed\n")
            try expectFile(dir + "/dir/a", "A\n")
            try equal(try status(dir + "/dir/a").st_mode & 0o777, 0o600, "mode of the updated file")
        }
        let bottom = try await s.view("bottom", parent: "base", labels: [:])
        try await mounted(bottom, "bottom") { dir in
            try expectFile(dir + "/foo", "foo\n")
            try expectFile(dir + "/dir/a", "a\n")
        }
    }

    func removeDirectoryInLowerLayer(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try makeDirectory(dir + "/lib")
            try makeDirectory(dir + "/lib/deep")
            try write(dir + "/lib/deep/file", "x")
            try makeDirectory(dir + "/keep")
        }
        try await layer(s, "removed", parent: "base") { dir in try removeAll(dir + "/lib") }
        try await layer(s, "recreated", parent: "removed") { dir in
            try expectAbsent(dir + "/lib")
            try makeDirectory(dir + "/lib")
            try write(dir + "/lib/new", "new")
        }
        let view = try await s.view("view", parent: "recreated", labels: [:])
        try await mounted(view, "view") { dir in
            try equal(try names(dir + "/lib"), ["new"], "entries of the recreated directory")
            try check(Mounting.isDirectory(dir + "/keep"), "/keep missing")
        }
    }

    func deletedFilesInChildSnapshot(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try write(dir + "/foo", "foo\n")
            try write(dir + "/bar", "bar\n")
        }
        try await layer(s, "deleted", parent: "base") { dir in
            try check(unlink(dir + "/foo") == 0, "unlink foo: \(FileSystem.errnoMessage())")
        }
        let mounts = try await s.prepare("child", parent: "deleted", labels: [:])
        try await mounted(mounts, "child") { dir in
            try expectAbsent(dir + "/foo")
            try expectFile(dir + "/bar", "bar\n")
            try equal(try names(dir), ["bar"], "entries of the child")
        }
    }

    func moveFileFromLowerLayer(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try makeDirectory(dir + "/dir")
            try write(dir + "/dir/a", "moved\n")
        }
        try await layer(s, "moved", parent: "base") { dir in
            try check(rename(dir + "/dir/a", dir + "/dir/b") == 0, "rename: \(FileSystem.errnoMessage())")
        }
        let view = try await s.view("view", parent: "moved", labels: [:])
        try await mounted(view, "view") { dir in
            try expectAbsent(dir + "/dir/a")
            try expectFile(dir + "/dir/b", "moved\n")
        }
    }

    /// Owner changes in a child are visible to its descendants.
    func chownInChild(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try makeDirectory(dir + "/dir")
            try write(dir + "/dir/file", "x")
        }
        try await layer(s, "chowned", parent: "base") { dir in
            try check(lchown(dir + "/dir", 1234, 5678) == 0, "chown dir: \(FileSystem.errnoMessage())")
            try check(lchown(dir + "/dir/file", 4321, 8765) == 0, "chown file: \(FileSystem.errnoMessage())")
        }
        let mounts = try await s.prepare("child", parent: "chowned", labels: [:])
        try await mounted(mounts, "child") { dir in
            let d = try status(dir + "/dir")
            try equal([d.st_uid, d.st_gid], [1234, 5678], "owner of /dir")
            let f = try status(dir + "/dir/file")
            try equal([f.st_uid, f.st_gid], [4321, 8765], "owner of /dir/file")
        }
    }

    /// Directory modes and owners survive commit when the child writes into them.
    func directoryPermissionOnCommit(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in
            try makeDirectory(dir + "/dir1", mode: 0o700)
            try check(lchown(dir + "/dir1", 1000, 1000) == 0, "chown: \(FileSystem.errnoMessage())")
            try makeDirectory(dir + "/dir2", mode: 0o1777)
        }
        try await layer(s, "child", parent: "base") { dir in
            try write(dir + "/dir1/f", "x")
            try makeDirectory(dir + "/dir2/sub", mode: 0o750)
        }
        let view = try await s.view("view", parent: "child", labels: [:])
        try await mounted(view, "view") { dir in
            let d1 = try status(dir + "/dir1")
            try equal(d1.st_mode & 0o7777, 0o700, "mode of /dir1")
            try equal([d1.st_uid, d1.st_gid], [1000, 1000], "owner of /dir1")
            try equal(try status(dir + "/dir2").st_mode & 0o7777, 0o1777, "mode of /dir2")
            try equal(try status(dir + "/dir2/sub").st_mode & 0o7777, 0o750, "mode of /dir2/sub")
        }
    }

    /// A view's mount refuses writes (EROFS), whether it has no parent, one, or several.
    func viewReadonly(_ s: any Snapshotter) async throws {
        try await layer(s, "base") { dir in try write(dir + "/foo", "foo\n") }
        let empty = try await s.view("empty-view", parent: "", labels: [:])
        let single = try await s.view("view", parent: "base", labels: [:])
        for (mounts, name) in [(empty, "empty-view"), (single, "view")] {
            try await mounted(mounts, name) { dir in
                let fd = open(dir + "/testfile", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                let code = errno
                if fd >= 0 { close(fd) }
                try check(fd < 0 && code == EROFS, "creating a file in \(name) should fail with EROFS (got \(code))")
                if name == "view" { try expectFile(dir + "/foo", "foo\n") }
            }
        }
    }

    /// A view of several layers merges them and is read-only.
    func multiParentView(_ s: any Snapshotter) async throws {
        try await layer(s, "l1") { dir in
            try write(dir + "/one", "1")
            try write(dir + "/shared", "from l1")
        }
        try await layer(s, "l2", parent: "l1") { dir in try write(dir + "/two", "2") }
        try await layer(s, "l3", parent: "l2") { dir in try write(dir + "/shared", "from l3") }
        let mounts = try await s.view("view", parent: "l3", labels: [:])
        try await mounted(mounts, "view") { dir in
            try expectFile(dir + "/one", "1")
            try expectFile(dir + "/two", "2")
            try expectFile(dir + "/shared", "from l3")
            let fd = open(dir + "/new", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            let code = errno
            if fd >= 0 { close(fd) }
            try check(fd < 0 && code == EROFS, "a multi-layer view must be read-only (errno \(code))")
        }
    }

    /// containerd's 128LayersMount: each layer overwrites a file, adds one, replaces a directory; the top view
    /// matches the flattened result. Deep overlay chains exceed a page of mount options with long roots.
    func layers128(_ s: any Snapshotter) async throws {
        var parent = ""
        for i in 0..<128 {
            let name = "committed-\(i)"
            try await layer(s, name, parent: parent, labels: Self.gcRoot) { dir in
                if i == 0 {
                    try write(dir + "/bottom", "way at the bottom\n", mode: 0o777)
                    try write(dir + "/overwriteme", "FIRST!\n", mode: 0o777)
                    try makeDirectory(dir + "/addhere")
                    try makeDirectory(dir + "/onlyme")
                    try write(dir + "/onlyme/bottom", "bye!\n", mode: 0o777)
                    return
                }
                try expectFile(dir + "/overwriteme", i == 1 ? "FIRST!\n" : "\(i - 1) WAS HERE!\n")
                try equal(try names(dir + "/addhere").count, i - 1, "files in /addhere under layer \(i)")
                try write(dir + "/overwriteme", "\(i) WAS HERE!\n", mode: 0o777)
                try write(dir + "/addhere/file-\(i)", "same\n", mode: 0o755)
                try removeAll(dir + "/onlyme")
                try makeDirectory(dir + "/onlyme")
                try write(dir + "/onlyme/file-\(i)", "only me!\n", mode: 0o777)
            }
            parent = name
        }
        let mounts = try await s.view("fullview", parent: parent, labels: Self.gcRoot)
        try await mounted(mounts, "fullview") { dir in
            try expectFile(dir + "/bottom", "way at the bottom\n")
            try expectFile(dir + "/overwriteme", "127 WAS HERE!\n")
            try equal(try names(dir + "/addhere"), (1...127).map { "file-\($0)" }.sorted(), "files in /addhere")
            try equal(try names(dir + "/onlyme"), ["file-127"], "files in /onlyme")
            try equal(try names(dir), ["addhere", "bottom", "onlyme", "overwriteme"], "top-level entries")
        }
    }
}
