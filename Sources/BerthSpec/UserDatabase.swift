import BerthCore

#if canImport(Glibc)
    import Glibc
#endif

/// The image's /etc/passwd and /etc/group, read from its root filesystem, for resolving `USER` values the way
/// containerd's `oci.WithUser`/`WithAdditionalGIDs` do. A nil file means the image has none.
public struct UserDatabase: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
    }
    public struct Group: Sendable, Equatable {
        public var name: String
        public var gid: UInt32
        public var members: [String]
    }

    public var users: [Entry]?
    public var groups: [Group]?

    public init(passwd: String?, group: String?) {
        users = passwd.map { text in
            Self.records(text, minimum: 4).compactMap { f in
                guard let uid = UInt32(f[2]), let gid = UInt32(f[3]) else { return nil }
                return Entry(name: f[0], uid: uid, gid: gid)
            }
        }
        groups = group.map { text in
            Self.records(text, minimum: 3).compactMap { f in
                guard let gid = UInt32(f[2]) else { return nil }
                let members = f.count > 3 ? f[3].split(separator: ",").map { String($0).trimmed } : []
                return Group(name: f[0], gid: gid, members: members.filter { !$0.isEmpty })
            }
        }
    }

    /// Reads both files from a root filesystem directory, never following a link out of it.
    public init(rootfs: String) {
        self.init(passwd: Self.read(rootfs, "etc/passwd"), group: Self.read(rootfs, "etc/group"))
    }

    /// Colon-separated records, skipping blanks and comments as libcontainer/user does.
    private static func records(_ text: String, minimum: Int) -> [[String]] {
        text.split(separator: "\n").compactMap { line in
            let l = String(line).trimmed
            guard !l.isEmpty, !l.hasPrefix("#") else { return nil }
            let fields = l.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            return fields.count >= minimum ? fields : nil
        }
    }

    /// The file at `relative` inside `root`, resolving symbolic links as if `root` were `/`.
    static func read(_ root: String, _ relative: String) -> String? {
        var parts = relative.split(separator: "/").map(String.init)
        var resolved: [String] = []
        var hops = 0
        while !parts.isEmpty {
            let part = parts.removeFirst()
            if part == "." || part.isEmpty { continue }
            if part == ".." { _ = resolved.popLast(); continue }
            let path = root + "/" + (resolved + [part]).joined(separator: "/")
            if let target = readLink(path) {
                hops += 1
                guard hops < 40 else { return nil }
                if target.hasPrefix("/") { resolved = [] }
                parts = target.split(separator: "/").map(String.init) + parts
                continue
            }
            resolved.append(part)
        }
        return try? FileSystem.read(root + "/" + resolved.joined(separator: "/"))
    }
}

/// The target of a symbolic link, or nil when `path` is not one.
func readLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buffer, 4096)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
