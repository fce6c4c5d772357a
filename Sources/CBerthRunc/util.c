/* Small system-call wrappers used from Swift (GNU APIs the Glibc module hides) and the sealed
 * re-exec of berth-runc from a memfd copy (CVE-2019-5736 class protection). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include "CBerthRunc.h"

int brc_socketpair_seqpacket(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
}

int brc_send_msg(int fd, int type, int value, const char *text) {
    struct brc_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.value = value;
    if (text) strncpy(m.text, text, sizeof(m.text) - 1);
    ssize_t n;
    do { n = send(fd, &m, sizeof(m), MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

/* Returns 0 on a message, -EPIPE when the peer closed without sending one. */
int brc_recv_msg(int fd, struct brc_msg *msg) {
    ssize_t n;
    memset(msg, 0, sizeof(*msg));
    do { n = recv(fd, msg, sizeof(*msg), 0); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return -EPIPE;
    return 0;
}

int brc_open_fifo_path(const char *path) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int brc_connect_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) { close(fd); return -ENAMETOOLONG; }
    strcpy(addr.sun_path, path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) { int e = -errno; close(fd); return e; }
    return fd;
}

/* Receives one fd sent with SCM_RIGHTS (used by tests and tools acting as console socket). */
int brc_recv_fd(int sock) {
    char buf[256];
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { buf, sizeof(buf) };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    msg.msg_control = cbuf; msg.msg_controllen = sizeof(cbuf);
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) < 0) return -errno;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -EBADMSG;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

int brc_memfd(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    return fd < 0 ? -errno : fd;
}

int brc_seal_readonly(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0 ? -errno : 0;
}

/* If /proc/self/exe is not a sealed memfd, copies it into one, seals it and re-executes from it, so a
 * container process can never reach (and overwrite) the berth-runc binary on the host. Returns -errno if
 * the copy fails (the caller continues unprotected only if it chooses to); does not return on success. */
int brc_ensure_sealed_exe(char *const argv[], char *const envp[]) {
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self < 0) return -errno;
    int seals = fcntl(self, F_GET_SEALS);
    if (seals >= 0 && (seals & F_SEAL_WRITE)) { close(self); return 0; }
    struct stat st;
    if (fstat(self, &st) < 0) { int e = -errno; close(self); return e; }
    int mfd = brc_memfd("berth-runc");
    if (mfd < 0) { close(self); return mfd; }
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t n = sendfile(mfd, self, NULL, (size_t)left);
        if (n < 0) { if (errno == EINTR) continue; int e = -errno; close(self); close(mfd); return e; }
        if (n == 0) break;
        left -= n;
    }
    close(self);
    int r = brc_seal_readonly(mfd);
    if (r < 0) { close(mfd); return r; }
    syscall(SYS_execveat, mfd, "", argv, envp, AT_EMPTY_PATH);
    int e = -errno;
    close(mfd);
    return e;
}

int brc_pidfd_open(pid_t pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
}

/* CLONE_NEW* for an OCI namespace type, 0 if unknown. */
int brc_clone_newflag(const char *name) {
    if (!strcmp(name, "pid")) return CLONE_NEWPID;
    if (!strcmp(name, "network")) return CLONE_NEWNET;
    if (!strcmp(name, "mount")) return CLONE_NEWNS;
    if (!strcmp(name, "ipc")) return CLONE_NEWIPC;
    if (!strcmp(name, "uts")) return CLONE_NEWUTS;
    if (!strcmp(name, "user")) return CLONE_NEWUSER;
    if (!strcmp(name, "cgroup")) return CLONE_NEWCGROUP;
#ifdef CLONE_NEWTIME
    if (!strcmp(name, "time")) return CLONE_NEWTIME;
#else
    if (!strcmp(name, "time")) return 0x00000080;
#endif
    return 0;
}

/* Moving a task between cgroups takes the global cgroup_threadgroup_rwsem for writing, whose first writer
 * waits for an RCU grace period (about 10 ms here). Writing our own pid into the cgroup we are already in
 * (a no-op move) from a helper thread starts that wait early, overlapping it with config parsing and
 * setup, so the container's real migration finds the semaphore already in its fast state. */
static char prewarm_path[4096];
static void *prewarm_thread(void *arg) {
    (void)arg;
    int fd = open(prewarm_path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%d", (int)getpid());
        if (write(fd, buf, (size_t)n) < 0) { /* best effort */ }
        close(fd);
    }
    return NULL;
}

void brc_prewarm_cgroup_attach(const char *procs_path) {
    if (!procs_path || strlen(procs_path) >= sizeof(prewarm_path)) return;
    strcpy(prewarm_path, procs_path);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, prewarm_thread, NULL);
    pthread_attr_destroy(&attr);
}

/* Foreground `run`/`exec`: signals sent to berth-runc are passed on to the container process, like runc. */
static volatile pid_t forward_pid;
static void forward_handler(int sig) { if (forward_pid > 0) kill(forward_pid, sig); }

void brc_forward_signals(pid_t pid) {
    static const int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGALRM, SIGCONT, SIGTSTP,
                                SIGTTIN, SIGTTOU, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGPWR, SIGWINCH };
    forward_pid = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
}
