#if canImport(Glibc)
    import Glibc
#endif

/// What every posix_spawn caller of Berth's (berthd's helpers, the tests' runner) sets up the same way.
public enum PosixSpawn {
    public typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    public typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    /// glibc 2.34's posix_spawn_file_actions_addclosefrom_np, looked up at run time (no header declares it here).
    public static let addCloseFrom: AddCloseFrom? = symbol("posix_spawn_file_actions_addclosefrom_np")
    /// glibc 2.29's posix_spawn_file_actions_addchdir_np.
    public static let addChdir: AddChdir? = symbol("posix_spawn_file_actions_addchdir_np")

    static func symbol<T>(_ name: String) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let found = dlsym(handle, name) else { return nil }
        return unsafeBitCast(found, to: T.self)
    }

    /// Makes the child start as from a shell: every signal at its default disposition and none blocked, whatever
    /// the spawning thread blocked (GCD and cooperative-pool threads block most) or the process ignored.
    /// Returns the flags to include in posix_spawnattr_setflags.
    public static func defaultSignals(_ attributes: inout posix_spawnattr_t) -> Int16 {
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        return Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
    }
}
