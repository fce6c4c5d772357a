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
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>
#include "CBerthRunc.h"

int brc_socketpair_seqpacket(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
}

int brc_send_msg(int fd, int type, int value, const char *text) {
    return brc_send_msg_fd(fd, type, value, text, -1);
}

int brc_send_text_fd(int sock, const char *text, size_t len, int passfd) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { (void *)text, len };
    struct msghdr h;
    memset(&h, 0, sizeof(h));
    memset(cbuf, 0, sizeof(cbuf));
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    if (passfd >= 0) {
        h.msg_control = cbuf;
        h.msg_controllen = sizeof(cbuf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&h);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    }
    ssize_t n;
    do { n = sendmsg(sock, &h, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : 0;
}

int brc_send_msg_fd(int fd, int type, int value, const char *text, int passfd) {
    struct brc_msg m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.value = value;
    if (text) strncpy(m.text, text, sizeof(m.text) - 1);
    return brc_send_text_fd(fd, (const char *)&m, sizeof(m), passfd);
}

int brc_recv_msg_fd(int fd, struct brc_msg *msg, int *rfd) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { msg, sizeof(*msg) };
    struct msghdr h;
    memset(msg, 0, sizeof(*msg));
    memset(&h, 0, sizeof(h));
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = cbuf;
    h.msg_controllen = sizeof(cbuf);
    if (rfd) *rfd = -1;
    ssize_t n;
    do { n = recvmsg(fd, &h, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return -EPIPE;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int got;
            memcpy(&got, CMSG_DATA(c), sizeof(int));
            if (rfd) *rfd = got; else close(got);
        }
    }
    return 0;
}

/* Returns 0 on a message, -EPIPE when the peer closed without sending one. */
int brc_recv_msg(int fd, struct brc_msg *msg) {
    return brc_recv_msg_fd(fd, msg, NULL);
}

int brc_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int brc_socketpair_stream(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
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
    /* On a read-only mount the binary cannot be reopened for writing through /proc/<pid>/exe either (EROFS,
     * and a container cannot remount a mount of another namespace): no copy needed, saving ~20 MB of copying. */
    struct statfs sfs;
    if (fstatfs(self, &sfs) == 0 && (sfs.f_flags & ST_RDONLY)) { close(self); return 0; }
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

/* Foreground `run`/`exec` of a terminal process without --console-socket: relays our stdin to the pty master
 * and the master to our stdout until `pid` exits (then drains what is left), as runc does. If stdin is a
 * terminal it is put in raw mode and its size is copied to the pty. Reaps `pid`; returns its wait status,
 * or -errno. */
int brc_relay_console(int master, pid_t pid) {
    struct termios saved;
    int raw = isatty(0) && tcgetattr(0, &saved) == 0;
    if (raw) {
        struct termios t = saved;
        cfmakeraw(&t);
        tcsetattr(0, TCSANOW, &t);
        struct winsize ws;
        if (ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
    }
    int in_open = 1, out_open = 1, status = 0, reaped = 0;
    char buf[8192];
    while (out_open) {
        if (!reaped && waitpid(pid, &status, WNOHANG) == pid) reaped = 1;
        struct pollfd fds[2] = { { master, POLLIN, 0 }, { 0, POLLIN, 0 } };
        int n = poll(fds, in_open ? 2 : 1, reaped ? 0 : 50);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) { if (reaped) break; continue; }  /* exited and nothing left to read */
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(master, buf, sizeof(buf));
            if (r <= 0 && !(r < 0 && (errno == EINTR || errno == EAGAIN))) out_open = 0; /* every slave closed */
            for (ssize_t off = 0; r > 0 && off < r;) {
                ssize_t w = write(1, buf + off, (size_t)(r - off));
                if (w <= 0) break;
                off += w;
            }
        }
        if (in_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(0, buf, sizeof(buf));
            if (r <= 0) in_open = 0;
            for (ssize_t off = 0; r > 0 && off < r;) {
                ssize_t w = write(master, buf + off, (size_t)(r - off));
                if (w <= 0) break;
                off += w;
            }
        }
    }
    if (raw) tcsetattr(0, TCSANOW, &saved);
    if (!reaped) {
        while (waitpid(pid, &status, 0) < 0) if (errno != EINTR) return -errno;
    }
    return status;
}

/* Receives up to len-1 bytes of text and at most one fd (SCM_RIGHTS) in one recvmsg; returns the byte count
 * (text NUL-terminated) or -errno. *rfd is -1 when no fd came. (Seccomp listener agents, tests.) */
int brc_recv_text_fd(int sock, char *buf, size_t len, int *rfd) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { buf, len - 1 };
    struct msghdr h;
    memset(&h, 0, sizeof(h));
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = cbuf;
    h.msg_controllen = sizeof(cbuf);
    *rfd = -1;
    ssize_t n;
    do { n = recvmsg(sock, &h, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    buf[n] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(rfd, CMSG_DATA(c), sizeof(int));
    return (int)n;
}
