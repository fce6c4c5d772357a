/* Process creation for berth-runc: stage 1 (a fork of the caller; joins namespaces by fd, clones stage 2
 * with CLONE_PARENT and the new namespaces) and stage 2 (the container process: rootfs, identity,
 * capabilities, seccomp, exec). Only async-signal-safe calls and no allocation happen in either stage. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "CBerthRunc.h"
#include "internal.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static _Noreturn void fail(int sync_fd, int err, const char *what) {
    char text[1024];
    snprintf(text, sizeof(text), "%s: %s", what && *what ? what : "container init", strerror(err));
    brc_send_msg(sync_fd, BRC_MSG_ERROR, err, text);
    _exit(1);
}

static int apply_caps(const struct brc_plan *p) {
    for (int c = 0; c <= 63; c++) {
        if (p->cap_bounding & (1ULL << c)) continue;
        if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0) break; /* beyond cap_last_cap */
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    }
    return 0;
}

static int set_cap_sets(const struct brc_plan *p) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)p->cap_effective; data[1].effective = (uint32_t)(p->cap_effective >> 32);
    data[0].permitted = (uint32_t)p->cap_permitted; data[1].permitted = (uint32_t)(p->cap_permitted >> 32);
    data[0].inheritable = (uint32_t)p->cap_inheritable; data[1].inheritable = (uint32_t)(p->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0) return -errno;
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (int c = 0; c <= 63; c++)
        if (p->cap_ambient & (1ULL << c)) prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
    return 0;
}

/* Loads the filter. With SCMP_ACT_NOTIFY rules it asks for a listener fd, hands it to the parent (which
 * passes it to the agent at listenerPath) and waits until the parent is done. */
static int load_seccomp(const struct brc_plan *p) {
    struct sock_fprog prog = { (unsigned short)p->seccomp_len, (struct sock_filter *)p->seccomp_filter };
    unsigned int flags = p->seccomp_flags | (p->seccomp_notify ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (fd < 0) return -errno;
    if (p->seccomp_notify) {
        struct brc_msg m;
        int r = brc_send_msg_fd(p->sync_fd, BRC_MSG_SECCOMP, 0, "", (int)fd);
        close((int)fd);
        if (r < 0) return r;
        if (brc_recv_msg(p->sync_fd, &m) < 0 || m.type != BRC_MSG_SECCOMP_DONE) return -EPIPE;
    }
    return 0;
}

/* A new session keyring (runc's default): the container does not share the caller's keys; like runc,
 * the keyring gets the user "search" permission. */
static int join_session_keyring(const char *name) {
    long k = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name);
    if (k < 0) return errno == ENOSYS ? 0 : -errno;
    char desc[256];
    long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, k, desc, sizeof(desc) - 1);
    if (n < 0) return -errno;
    desc[n < (long)sizeof(desc) ? n : (long)sizeof(desc) - 1] = 0;
    /* "type;uid;gid;perm;description", perm in hex */
    char *f = desc;
    for (int i = 0; i < 3 && f; i++) { f = strchr(f, ';'); if (f) f++; }
    if (!f) return -EINVAL;
    unsigned long perm = strtoul(f, NULL, 16) | 0x080000; /* KEY_USR_SEARCH */
    if (syscall(SYS_keyctl, KEYCTL_SETPERM, k, perm) < 0) return -errno;
    return 0;
}

/* struct sched_attr of sched_setattr(2) (glibc has no wrapper and no declaration). */
struct brc_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};

static int set_scheduler(const struct brc_plan *p) {
    struct brc_sched_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.sched_policy = p->sched_policy;
    a.sched_flags = p->sched_flags;
    a.sched_nice = p->sched_nice;
    a.sched_priority = p->sched_priority;
    a.sched_runtime = p->sched_runtime;
    a.sched_deadline = p->sched_deadline;
    a.sched_period = p->sched_period;
    return syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
}

/* Opens a pty inside the container, sends the master to the console socket, makes the slave our stdio. */
static int setup_terminal(const struct brc_plan *p) {
    brc_set_ctx("terminal", "/dev/ptmx");
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -errno;
    int unlock = 0, n = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0) return -errno;
    char name[64];
    snprintf(name, sizeof(name), "/dev/pts/%d", n);
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) return -errno;
    if (p->console_rows || p->console_cols) {
        struct winsize ws = { p->console_rows, p->console_cols, 0, 0 };
        if (ioctl(master, TIOCSWINSZ, &ws) < 0) return -errno;
    }
    if (p->console_fd >= 0) {
        struct msghdr msg;
        char cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { name, strlen(name) };
        memset(&msg, 0, sizeof(msg));
        memset(cbuf, 0, sizeof(cbuf));
        msg.msg_iov = &iov; msg.msg_iovlen = 1;
        msg.msg_control = cbuf; msg.msg_controllen = sizeof(cbuf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &master, sizeof(int));
        brc_set_ctx("send console", name);
        if (sendmsg(p->console_fd, &msg, 0) < 0) return -errno;
        close(p->console_fd);
    }
    close(master);
    for (int i = 0; i < 3; i++) if (dup2(slave, i) < 0) return -errno;
    if (ioctl(0, TIOCSCTTY, 0) < 0) return -errno;
    if (slave > 2) close(slave);
    return 0;
}

static const char *env_path(const struct brc_plan *p) {
    for (const char *const *e = p->envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) return *e + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* Resolves argv[0] against PATH (from the container env) into buf; -errno if not found. */
static int find_exec(const struct brc_plan *p, char *buf, size_t n) {
    const char *a0 = p->argv[0];
    if (strchr(a0, '/')) {
        snprintf(buf, n, "%s", a0);
        return access(buf, X_OK) < 0 ? -errno : 0;
    }
    const char *path = env_path(p);
    int err = -ENOENT;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(buf, n, "%.*s/%s", (int)len, path, a0);
        struct stat st;
        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(buf, X_OK) == 0) return 0;
            err = -EACCES;
        }
        if (!colon) break;
        path = colon + 1;
    }
    return err;
}

static const char *hook_state = "";
static size_t hook_state_len;

/* Runs one hook with the state on stdin; 0 on exit status 0, else -1 (timeout kills it). */
static int run_hook(const struct brc_hook *h) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(fds[0]); close(fds[1]); return -1; }
    if (pid == 0) {
        static const char *const empty[] = { NULL };
        const char *const self[] = { h->path, NULL };
        dup2(fds[0], 0);
        execve(h->path, (char *const *)(h->argv && h->argv[0] ? h->argv : self), (char *const *)(h->envp ? h->envp : empty));
        _exit(127);
    }
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    for (size_t off = 0; off < hook_state_len;) {
        ssize_t w = write(fds[1], hook_state + off, hook_state_len - off);
        if (w <= 0) break; /* the hook need not read its stdin */
        off += (size_t)w;
    }
    close(fds[1]);
    signal(SIGPIPE, SIG_DFL);
    int status = 0;
    long waited_ms = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, h->timeout > 0 ? WNOHANG : 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -1;
        if (h->timeout > 0) {
            if (waited_ms >= (long)h->timeout * 1000) { kill(pid, SIGKILL); waitpid(pid, &status, 0); return -1; }
            struct timespec ts = { 0, 5 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            waited_ms += 5;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int stage2(void *arg) {
    const struct brc_plan *p = arg;
    int s = p->sync_fd;
    struct brc_msg msg;
    int r;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Not dumpable (our /proc files owned by root) from the start, except while an unprivileged parent still
     * has to write our uid_map/gid_map/setgroups (as runc's nsexec does): then only after GO. */
    int late_nodump = p->userns && !p->no_go;
    if (!late_nodump) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* The program starts with default signal handling and nothing blocked, whatever berth-runc inherited. */
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < p->ncgroup_tasks; i++) {
        if (write(p->cgroup_tasks_fds[i], "0", 1) != 1) fail(s, errno, "join cgroup (write 0 to tasks)");
        close(p->cgroup_tasks_fds[i]);
    }
    if (!p->no_go && (brc_recv_msg(s, &msg) < 0 || msg.type != BRC_MSG_GO)) _exit(1);
    if (late_nodump) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (p->userns) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) fail(s, errno, "setresuid(0) in user namespace");
    }
    if (p->unshare_cgroupns && unshare(CLONE_NEWCGROUP) < 0) fail(s, errno, "unshare cgroup namespace");
    if (setsid() < 0 && p->is_init) fail(s, errno, "setsid");
    if (p->session_keyring && (r = join_session_keyring(p->session_keyring)) < 0) fail(s, -r, "join session keyring");
    for (int i = 0; i < 3; i++)
        if (p->stdio_fds[i] >= 0 && dup2(p->stdio_fds[i], i) < 0) fail(s, errno, "dup2 stdio");
    if (p->is_init) {
        if ((r = brc_prepare_rootfs(p)) < 0) fail(s, -r, brc_errctx);
        if (p->run_hooks) {
            brc_send_msg(s, BRC_MSG_HOOKS, 0, "");
            int memfd = -1;
            if (brc_recv_msg_fd(s, &msg, &memfd) < 0 || msg.type != BRC_MSG_HOOKS_DONE) _exit(1);
            if (memfd >= 0) {
                struct stat st;
                if (fstat(memfd, &st) == 0 && st.st_size > 0) {
                    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, memfd, 0);
                    if (m != MAP_FAILED) { hook_state = m; hook_state_len = (size_t)st.st_size; }
                }
                close(memfd);
            }
            for (int i = 0; i < p->ncreate_hooks; i++)
                if (run_hook(&p->create_hooks[i]) < 0) fail(s, ECANCELED, "createContainer hook failed");
        }
        if ((r = brc_enter_rootfs(p)) < 0) fail(s, -r, brc_errctx);
        if ((r = brc_finish_rootfs(p)) < 0) fail(s, -r, brc_errctx);
        if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) fail(s, errno, "sethostname");
        if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0) fail(s, errno, "setdomainname");
    }
    if (p->set_oom_score_adj) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        char v[32];
        int n = snprintf(v, sizeof(v), "%d", p->oom_score_adj);
        if (fd < 0 || write(fd, v, (size_t)n) < 0) fail(s, errno, "write oom_score_adj");
        close(fd);
    }
    for (int i = 0; i < p->nrlimits; i++) {
        struct rlimit rl = { (rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard };
        if (setrlimit(p->rlimits[i].resource, &rl) < 0) fail(s, errno, "setrlimit");
    }
    if (p->personality >= 0 && personality((unsigned long)p->personality) < 0) fail(s, errno, "personality");
    if (p->ioprio >= 0 && syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, p->ioprio) < 0)
        fail(s, errno, "set io priority");
    if (p->set_sched && (r = set_scheduler(p)) < 0) fail(s, -r, "set scheduler");
    if (p->terminal && (r = setup_terminal(p)) < 0) fail(s, -r, brc_errctx);
    char exe[4096];
    if ((r = find_exec(p, exe, sizeof(exe))) < 0) {
        char what[600];
        snprintf(what, sizeof(what), "exec: \"%s\": executable file not found in $PATH", p->argv[0]);
        fail(s, -r, what);
    }
    /* Without no_new_privs a seccomp filter needs CAP_SYS_ADMIN: load it while we still have it. */
    if (p->seccomp_len > 0 && !p->no_new_privs && (r = load_seccomp(p)) < 0) fail(s, -r, "seccomp");
    if (p->set_caps && (r = apply_caps(p)) < 0) fail(s, -r, "drop bounding capabilities");
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(s, errno, "keepcaps");
    if (setgroups((size_t)p->ngroups, p->groups) < 0 && !(errno == EPERM && p->ngroups == 0)) fail(s, errno, "setgroups");
    if (setresgid(p->gid, p->gid, p->gid) < 0) fail(s, errno, "setgid");
    if (setresuid(p->uid, p->uid, p->uid) < 0) fail(s, errno, "setuid");
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    if (p->set_caps && (r = set_cap_sets(p)) < 0) fail(s, -r, "capset");
    if (p->cwd && *p->cwd && chdir(p->cwd) < 0) fail(s, errno, "chdir to cwd");
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(s, errno, "no_new_privs");
    if (p->umask >= 0) umask((mode_t)p->umask);
    /* A listener fd must reach the parent while the sync socket is open (runc does the same). */
    if (p->seccomp_len > 0 && p->no_new_privs && p->seccomp_notify && (r = load_seccomp(p)) < 0) fail(s, -r, "seccomp");
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    /* The caller may exit as soon as it reads READY: stop tying our life to it first. */
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    brc_send_msg(s, BRC_MSG_READY, 0, "");
    close(s);
    if (p->fifo_fd >= 0) {
        char fp[64];
        snprintf(fp, sizeof(fp), "/proc/self/fd/%d", p->fifo_fd);
        int w = open(fp, O_WRONLY | O_CLOEXEC);
        if (w < 0) _exit(127);
        if (write(w, "0", 1) != 1) _exit(127);
        close(w);
        close(p->fifo_fd);
    }
    for (int i = 0; i < p->nstart_hooks; i++)
        if (run_hook(&p->start_hooks[i]) < 0) _exit(1);
    if (p->seccomp_len > 0 && p->no_new_privs && !p->seccomp_notify && load_seccomp(p) < 0) _exit(127);
    syscall(SYS_close_range, 3 + p->preserve_fds, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(exe, (char *const *)p->argv, (char *const *)p->envp);
    _exit(127);
}

static char stage2_stack[256 * 1024] __attribute__((aligned(16)));

pid_t brc_spawn(const struct brc_plan *plan) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) return pid;
    /* Stage 1: single-threaded copy of the caller. */
    int s = plan->sync_fd;
    for (int i = 0; i < plan->njoin; i++)
        if (setns(plan->join_fds[i], 0) < 0) fail(s, errno, "setns");
    for (int i = 0; i < plan->njoin; i++) close(plan->join_fds[i]);
    if (plan->timens_offsets) {
        /* A time namespace applies to children only, and its offsets must be set before any task is in it. */
        if (unshare(CLONE_NEWTIME) < 0) fail(s, errno, "unshare time namespace");
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        size_t len = strlen(plan->timens_offsets);
        if (fd < 0 || write(fd, plan->timens_offsets, len) != (ssize_t)len) fail(s, errno, "write timens_offsets");
        close(fd);
    }
    pid_t child = -1;
    const char *pending = "";
    if (plan->cgroup2_fd >= 0) {
        /* Born in its v2 cgroup: no migration at all. Like fork (no CLONE_VM): the child runs on a copy of
         * this stack. Refused e.g. after joining another cgroup or user namespace (exec): then plain clone. */
        struct clone_args a;
        memset(&a, 0, sizeof(a));
        a.flags = (uint64_t)(unsigned)plan->clone_flags | CLONE_PARENT | CLONE_INTO_CGROUP;
        a.exit_signal = 0; /* clone3 wants 0 with CLONE_PARENT: the child inherits our exit signal (SIGCHLD) */
        a.cgroup = (uint64_t)plan->cgroup2_fd;
        child = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
        if (child == 0) _exit(stage2((void *)plan));
        if (child < 0) pending = "cgroup2";
    }
    if (child < 0) {
        child = clone(stage2, stage2_stack + sizeof(stage2_stack), plan->clone_flags | CLONE_PARENT | SIGCHLD,
                      (void *)plan);
        if (child < 0) fail(s, errno, "clone");
    }
    brc_send_msg(s, BRC_MSG_PID, child, pending);
    _exit(0);
}

/* Without namespaces to join or a time namespace to set up there is no need for stage 1: the caller clones
 * the container process itself (one fork less, no PID message). If clone3(CLONE_INTO_CGROUP) is refused, the
 * child is cloned plainly, told to wait for GO, and *v2_pending is set: the caller writes it into the v2
 * cgroup first. Returns the pid or -errno. */
pid_t brc_spawn_direct(const struct brc_plan *plan, int *v2_pending) {
    *v2_pending = 0;
    if (plan->cgroup2_fd >= 0) {
        struct clone_args a;
        memset(&a, 0, sizeof(a));
        a.flags = (uint64_t)(unsigned)plan->clone_flags | CLONE_INTO_CGROUP;
        a.exit_signal = SIGCHLD;
        a.cgroup = (uint64_t)plan->cgroup2_fd;
        pid_t child = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
        if (child == 0) _exit(stage2((void *)plan));
        if (child > 0) return child;
        *v2_pending = 1;
    }
    struct brc_plan copy = *plan;
    if (*v2_pending) copy.no_go = 0;
    pid_t child = clone(stage2, stage2_stack + sizeof(stage2_stack), plan->clone_flags | SIGCHLD, (void *)&copy);
    return child < 0 ? -errno : child;
}
