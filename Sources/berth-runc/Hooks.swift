import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// OCI hooks: each runs with the container state on stdin; a non-zero exit or a timeout fails it.
enum Hooks {
    static func run(_ hooks: [Spec.Hook]?, kind: String, state: String) throws {
        for hook in hooks ?? [] { try run(hook, kind: kind, state: state) }
    }

    static func run(_ hook: Spec.Hook, kind: String, state: String) throws {
        var pipeFds: [Int32] = [-1, -1]
        guard pipe(&pipeFds) == 0 else { throw RuncError.sys("\(kind) hook: pipe", errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFds[0], 0)
        posix_spawn_file_actions_addclose(&actions, pipeFds[1])
        let argv = hook.args ?? [hook.path]
        let env = hook.env ?? []
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer { for p in cArgs + cEnv { free(p) } }
        let r = posix_spawn(&pid, hook.path, &actions, nil, cArgs, cEnv)
        close(pipeFds[0])
        guard r == 0 else {
            close(pipeFds[1])
            throw RuncError.sys("\(kind) hook \(hook.path)", r)
        }
        signal(SIGPIPE, SIG_IGN)
        _ = state.withCString { write(pipeFds[1], $0, strlen($0)) }
        close(pipeFds[1])
        let deadline = hook.timeout.map { Double($0) } ?? -1
        var waited = 0.0
        var status: Int32 = 0
        while true {
            let w = waitpid(pid, &status, deadline < 0 ? 0 : WNOHANG)
            if w == pid { break }
            if w < 0 && errno != EINTR { throw RuncError.sys("\(kind) hook: wait", errno) }
            if deadline >= 0 {
                if waited >= deadline {
                    kill(pid, SIGKILL)
                    _ = waitpid(pid, &status, 0)
                    throw RuncError("\(kind) hook \(hook.path) timed out after \(hook.timeout ?? 0)s")
                }
                usleep(5000)
                waited += 0.005
            }
        }
        let code = exitCode(status)
        if code != 0 { throw RuncError("\(kind) hook \(hook.path) failed: exit status \(code)") }
    }
}
