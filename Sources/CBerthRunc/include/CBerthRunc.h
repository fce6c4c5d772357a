#ifndef CBERTHRUNC_H
#define CBERTHRUNC_H
/*
 * The part of berth-runc that runs between clone and exec of a container process.
 *
 * Swift computes everything (mount list, devices, capabilities, rlimits, seccomp BPF, ...) into a
 * `brc_plan` whose strings and arrays stay valid in forked children; `brc_spawn` forks a single-threaded
 * helper (stage 1) that joins namespaces by fd and clones the container process (stage 2) with
 * CLONE_PARENT, so that process is a child of the berth-runc caller. Only C code runs in the children.
 */
#include <stdint.h>
#include <sys/types.h>

/* Kinds of rootfs entries. */
enum { BRC_MOUNT = 0, BRC_SYMLINK = 1, BRC_MKDIR = 2, BRC_REMOUNT = 3 };

struct brc_mount {
    int kind;
    const char *source;        /* host path for binds; fs source otherwise; symlink target for BRC_SYMLINK */
    const char *target;        /* absolute path inside the container */
    const char *fstype;
    const char *data;
    unsigned long flags;       /* MS_* (no propagation bits) */
    unsigned long propagation; /* MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE, maybe | MS_REC */
    int is_bind;
    int remount;               /* a bind whose flags need a MS_REMOUNT pass */
    int target_is_file;        /* create the target as a file (bind of a non-directory) */
};

struct brc_device {
    const char *path;          /* absolute path inside the container */
    const char *host_path;     /* for bind-mounting when mknod is not allowed (user namespace) */
    unsigned int mode;         /* S_IFCHR/S_IFBLK/S_IFIFO | permission bits */
    unsigned int major, minor;
    uid_t uid;
    gid_t gid;
};

struct brc_rlimit { int resource; uint64_t soft, hard; };

/* An OCI hook run by the container process itself (createContainer, startContainer). */
struct brc_hook {
    const char *path;
    const char *const *argv;   /* NULL terminated */
    const char *const *envp;   /* NULL terminated */
    int timeout;               /* seconds, 0: none */
};

/* Message on the sync socket (SOCK_SEQPACKET). */
enum { BRC_MSG_PID = 'P', BRC_MSG_GO = 'G', BRC_MSG_HOOKS = 'H', BRC_MSG_HOOKS_DONE = 'h', BRC_MSG_READY = 'R', BRC_MSG_ERROR = 'E',
       BRC_MSG_SECCOMP = 'S', BRC_MSG_SECCOMP_DONE = 's' };
/* HOOKS_DONE carries the state JSON as a memfd (any size); SECCOMP carries the seccomp listener fd. */
struct brc_msg { int32_t type; int32_t value; char text[8192]; };

struct brc_plan {
    /* namespaces */
    int clone_flags;           /* CLONE_NEW* created by clone (never CLONE_NEWCGROUP) */
    int unshare_cgroupns;      /* unshare(CLONE_NEWCGROUP) after the parent placed the process in cgroups */
    const int *join_fds;       /* namespace fds to setns() in stage 1, user namespace first */
    int njoin;
    int userns;                /* process is in a new or joined user namespace: setresuid(0) after go */

    /* rootfs (init only) */
    int is_init;
    const char *rootfs;        /* absolute host path */
    unsigned long root_propagation;  /* applied to / before anything, MS_REC included */
    int no_pivot;
    int readonly_root;
    const struct brc_mount *mounts; int nmounts;
    const struct brc_device *devices; int ndevices;
    int bind_devices;
    const char *const *masked; int nmasked;
    const char *const *readonly; int nreadonly;
    const char *hostname;      /* NULL: leave */
    const char *domainname;
    const char *const *sysctl_paths; const char *const *sysctl_values; int nsysctl;

    /* process */
    const char *const *argv;   /* NULL terminated */
    const char *const *envp;   /* NULL terminated */
    const char *cwd;
    uid_t uid; gid_t gid;
    const gid_t *groups; int ngroups;
    int umask;                 /* -1: leave */
    const struct brc_rlimit *rlimits; int nrlimits;
    int set_caps;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    int set_oom_score_adj; int oom_score_adj;
    int personality;           /* personality(2) persona (linux.personality), -1: leave */
    int ioprio;                /* ioprio_set(2) value, class << 13 | level (process.ioPriority), -1: leave */
    int set_sched;             /* process.scheduler: sched_setattr(2) with the fields below */
    uint32_t sched_policy; int32_t sched_nice; uint32_t sched_priority;
    uint64_t sched_flags, sched_runtime, sched_deadline, sched_period;
    unsigned short console_rows, console_cols;  /* process.consoleSize of a new pty; 0: leave */
    const void *seccomp_filter; int seccomp_len;   /* struct sock_filter[], 0 = none */
    unsigned int seccomp_flags;
    int seccomp_notify;        /* the filter has SCMP_ACT_NOTIFY rules: load it with a new listener before READY
                                  and send the listener fd to the parent (BRC_MSG_SECCOMP) */
    const char *session_keyring; /* join a new session keyring of this name ("_ses.<id>"); NULL: keep ours */
    const char *timens_offsets;  /* stage 1 unshares a time namespace and writes this to timens_offsets; NULL: none */
    int terminal;
    int console_fd;            /* connected console socket, -1 */
    int preserve_fds;          /* keep fds 3..3+n-1 */
    int stdio_fds[3];          /* -1: inherit */

    /* cgroups: the new process joins them itself, avoiding the parent's cgroup.procs write (its first
       writer waits an RCU grace period on the global cgroup_threadgroup_rwsem, 10-20 ms here) */
    const int *cgroup_tasks_fds; int ncgroup_tasks;  /* v1 `tasks` files (O_WRONLY): stage 2 writes "0" (itself,
                                                        single-threaded: no global lock) */
    int cgroup2_fd;            /* O_PATH dir of the v2 cgroup: clone3(CLONE_INTO_CGROUP); -1: none. If clone3
                                  refuses, stage 1 clones plainly and the PID message's text is "cgroup2" so
                                  the parent writes the pid into cgroup.procs */

    /* sync */
    int sync_fd;               /* child end of the socketpair */
    int no_go;                 /* the parent has nothing to do between clone and the child's setup: do not
                                  wait for BRC_MSG_GO (brc_spawn_direct only) */
    int fifo_fd;               /* O_PATH fd of exec.fifo (create), -1 for exec */
    int run_hooks;             /* ask the parent to run prestart/createRuntime hooks before pivot_root; its
                                  answer carries the state JSON for the hooks below */
    const struct brc_hook *create_hooks; int ncreate_hooks;  /* createContainer: before pivot_root */
    const struct brc_hook *start_hooks; int nstart_hooks;    /* startContainer: after start, before exec */
};

/* Forks stage 1; returns its pid or -errno. The container pid arrives on the sync socket as BRC_MSG_PID. */
pid_t brc_spawn(const struct brc_plan *plan);

/* The same without stage 1 when nothing is joined (see spawn.c). */
pid_t brc_spawn_direct(const struct brc_plan *plan, int *v2_pending);

/* Small wrappers for things Swift's Glibc module hides. All return 0 / a value, or -errno. */
int brc_socketpair_seqpacket(int fds[2]);
int brc_send_msg(int fd, int type, int value, const char *text);
int brc_recv_msg(int fd, struct brc_msg *msg);
/* The same with one fd passed along (SCM_RIGHTS): passfd < 0 sends none; *rfd is -1 when none came. */
int brc_send_msg_fd(int fd, int type, int value, const char *text, int passfd);
int brc_recv_msg_fd(int fd, struct brc_msg *msg, int *rfd);
/* Sends `text` and one fd over a connected unix socket (seccomp listenerPath). */
int brc_send_text_fd(int sock, const char *text, size_t len, int passfd);
int brc_recv_text_fd(int sock, char *buf, size_t len, int *rfd);
int brc_eventfd(void);
/* Opens a file for reading inside `root`, resolved with RESOLVE_IN_ROOT (see rootfs.c). */
int brc_open_in_root(const char *root, const char *path);
/* Relays stdio to a pty master until `pid` exits (see util.c); returns its wait status or -errno. */
int brc_relay_console(int master, pid_t pid);
/* Creates a socketpair of stream sockets (console relay). */
int brc_socketpair_stream(int fds[2]);
int brc_open_fifo_path(const char *path);
int brc_connect_unix(const char *path);
int brc_recv_fd(int sock);
int brc_ensure_sealed_exe(char *const argv[], char *const envp[]);
int brc_pidfd_open(pid_t pid);
int brc_clone_newflag(const char *name);
int brc_memfd(const char *name);
int brc_seal_readonly(int fd);
/* Forwards common signals received by this process to `pid` (foreground run/exec). */
void brc_forward_signals(pid_t pid);
/* Loads `count` eBPF instructions as a cgroup device program and attaches it to the cgroup v2 directory fd,
 * detaching the programs attached there before; the verifier's log goes to `log`. 0 or -errno. */
int brc_devices_filter_attach(int cgroup_fd, const void *insns, uint32_t count, char *log, uint32_t log_size);

#endif
