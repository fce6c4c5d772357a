/* Rootfs preparation for the container init: mounts resolved inside the rootfs (openat2 RESOLVE_IN_ROOT),
 * devices, pivot_root, masked and read-only paths. Runs in the single-threaded stage-2 child only, so it
 * uses no malloc and no stdio; errors are returned as -errno with a static description in brc_errctx. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "CBerthRunc.h"
#include "internal.h"

char brc_errctx[512];

void brc_set_ctx(const char *what, const char *path) {
    size_t n = 0;
    brc_errctx[0] = 0;
    for (const char *p = what; p && *p && n < sizeof(brc_errctx) - 1; p++) brc_errctx[n++] = *p;
    if (path) {
        if (n < sizeof(brc_errctx) - 1) brc_errctx[n++] = ' ';
        for (const char *p = path; *p && n < sizeof(brc_errctx) - 1; p++) brc_errctx[n++] = *p;
    }
    brc_errctx[n] = 0;
}

static int openat2_in_root(int rootfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    while (*path == '/') path++;
    if (*path == 0) path = ".";
    int fd;
    do { fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how)); } while (fd < 0 && errno == EAGAIN);
    return fd < 0 ? -errno : fd;
}

/* Makes every missing directory of `path` inside the root (mkdir -p that never leaves it) and the last
 * component as a directory, or as an empty file when `as_file`. A dangling symlink on the way is followed
 * inside the root (its target is created), like runc's securejoin. Returns an O_PATH fd of the result. */
int brc_mkpath_in_root(int rootfd, const char *path, int as_file) {
    static char cur[4096], next[4096], prefix[4096], link[4096];
    if (strlen(path) >= sizeof(cur)) return -ENAMETOOLONG;
    strcpy(cur, path);
    for (int hops = 0; hops < 40; hops++) {
        int fd = openat2_in_root(rootfd, cur, O_PATH);
        if (fd != -ENOENT) return fd;
        prefix[0] = 0;
        char *p = cur;
        int restart = 0;
        while (*p && !restart) {
            while (*p == '/') p++;
            if (!*p) break;
            char *end = strchr(p, '/');
            size_t clen = end ? (size_t)(end - p) : strlen(p);
            int last = 1;
            for (char *q = p + clen; *q; q++) if (*q != '/') { last = 0; break; }
            char comp[256];
            if (clen >= sizeof(comp)) return -ENAMETOOLONG;
            memcpy(comp, p, clen);
            comp[clen] = 0;
            size_t plen = strlen(prefix);
            if (plen + clen + 2 >= sizeof(prefix)) return -ENAMETOOLONG;
            int parent = openat2_in_root(rootfd, plen ? prefix : "/", O_PATH | O_DIRECTORY);
            if (parent < 0) return parent;
            snprintf(prefix + plen, sizeof(prefix) - plen, "/%s", comp);
            int have = openat2_in_root(rootfd, prefix, O_PATH);
            if (have >= 0) { close(have); close(parent); p += clen; continue; }
            if (have != -ENOENT) { close(parent); return have; }
            ssize_t n = readlinkat(parent, comp, link, sizeof(link) - 1);
            if (n >= 0) {
                /* Dangling symlink: continue from its target, resolved against the root. */
                link[n] = 0;
                prefix[plen] = 0;
                const char *rest = p + clen;
                int w = link[0] == '/' ? snprintf(next, sizeof(next), "%s%s", link, rest)
                                       : snprintf(next, sizeof(next), "%s/%s%s", prefix, link, rest);
                close(parent);
                if (w < 0 || (size_t)w >= sizeof(next)) return -ENAMETOOLONG;
                strcpy(cur, next);
                restart = 1;
                break;
            }
            int r;
            if (last && as_file) {
                r = openat(parent, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (r >= 0) { close(r); r = 0; }
            } else {
                r = mkdirat(parent, comp, 0755);
            }
            int e = errno;
            close(parent);
            if (r < 0 && e != EEXIST) return -e;
            p += clen;
        }
        if (!restart) return openat2_in_root(rootfd, cur, O_PATH);
    }
    return -ELOOP;
}

static void fdpath(char *out, size_t n, int fd) { snprintf(out, n, "/proc/self/fd/%d", fd); }

/* MS_* flags that a remount must keep (locked in a user namespace), from statfs. */
static unsigned long locked_flags(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) < 0) return 0;
    unsigned long f = 0;
    if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (st.f_flag & ST_NODEV) f |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
    if (st.f_flag & ST_RDONLY) f |= MS_RDONLY;
    return f;
}

static int do_mount(int rootfd, const struct brc_mount *m) {
    char target[64];
    if (m->kind == BRC_SYMLINK) {
        brc_set_ctx("symlink", m->target);
        const char *slash = strrchr(m->target, '/');
        char dir[4096];
        size_t dl = slash ? (size_t)(slash - m->target) : 0;
        if (dl >= sizeof(dir)) return -ENAMETOOLONG;
        memcpy(dir, m->target, dl);
        dir[dl] = 0;
        int dfd = brc_mkpath_in_root(rootfd, dl ? dir : "/", 0);
        if (dfd < 0) return dfd;
        /* O_PATH fds cannot be used with symlinkat; reopen the directory. */
        fdpath(target, sizeof(target), dfd);
        int real = open(target, O_DIRECTORY | O_CLOEXEC);
        close(dfd);
        if (real < 0) return -errno;
        int r = symlinkat(m->source, real, slash ? slash + 1 : m->target);
        int e = errno;
        close(real);
        return (r < 0 && e != EEXIST) ? -e : 0;
    }
    brc_set_ctx("mount", m->target);
    int fd = brc_mkpath_in_root(rootfd, m->target, m->kind == BRC_MOUNT && m->target_is_file);
    if (fd < 0) return fd;
    if (m->kind == BRC_MKDIR) { close(fd); return 0; }
    fdpath(target, sizeof(target), fd);
    int r;
    if (m->kind == BRC_REMOUNT) {
        r = mount(NULL, target, NULL, m->flags | MS_REMOUNT, NULL);
        int e = errno;
        close(fd);
        return r < 0 ? -e : 0;
    }
    if (m->is_bind) {
        r = mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL);
        if (r == 0) {
            /* Reopen: the fd still points at the covered directory, not the new mount. */
            close(fd);
            fd = brc_mkpath_in_root(rootfd, m->target, m->target_is_file);
            if (fd < 0) return fd;
            fdpath(target, sizeof(target), fd);
            if (m->remount)
                r = mount(NULL, target, NULL,
                          (m->flags & ~MS_REC) | MS_BIND | MS_REMOUNT | (locked_flags(target) & ~MS_RDONLY), NULL);
        }
    } else {
        r = mount(m->source, target, m->fstype, m->flags, m->data && *m->data ? m->data : NULL);
        if (r < 0 && errno == EINVAL && m->data && *m->data) {
            /* e.g. mqueue/proc reject options some kernels do not know: retry without data like runc. */
        }
        if (r == 0 && m->propagation) {
            close(fd);
            fd = brc_mkpath_in_root(rootfd, m->target, 0);
            if (fd < 0) return fd;
            fdpath(target, sizeof(target), fd);
        }
    }
    if (r == 0 && m->propagation) r = mount(NULL, target, NULL, m->propagation, NULL);
    int e = errno;
    close(fd);
    return r < 0 ? -e : 0;
}

static int make_device(int rootfd, const struct brc_device *d, int bind) {
    brc_set_ctx("device", d->path);
    if (bind) {
        int fd = brc_mkpath_in_root(rootfd, d->path, 1);
        if (fd < 0) return fd;
        char target[64];
        fdpath(target, sizeof(target), fd);
        int r = mount(d->host_path, target, NULL, MS_BIND, NULL);
        int e = errno;
        close(fd);
        return r < 0 ? -e : 0;
    }
    const char *slash = strrchr(d->path, '/');
    char dir[4096];
    size_t dl = slash ? (size_t)(slash - d->path) : 0;
    if (dl >= sizeof(dir)) return -ENAMETOOLONG;
    memcpy(dir, d->path, dl);
    dir[dl] = 0;
    int dfd = brc_mkpath_in_root(rootfd, dl ? dir : "/", 0);
    if (dfd < 0) return dfd;
    char p[64];
    fdpath(p, sizeof(p), dfd);
    int real = open(p, O_DIRECTORY | O_CLOEXEC);
    close(dfd);
    if (real < 0) return -errno;
    const char *name = slash ? slash + 1 : d->path;
    unlinkat(real, name, 0);
    int r = mknodat(real, name, d->mode, makedev(d->major, d->minor));
    if (r == 0) r = fchmodat(real, name, d->mode & 07777, 0);
    if (r == 0) r = fchownat(real, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW);
    int e = errno;
    close(real);
    return r < 0 ? -e : 0;
}

/* Mounts, devices and symlinks inside plan->rootfs, before pivot_root. */
int brc_prepare_rootfs(const struct brc_plan *plan) {
    brc_set_ctx("rootfs propagation", "/");
    if (mount(NULL, "/", NULL, plan->root_propagation ? plan->root_propagation : (MS_SLAVE | MS_REC), NULL) < 0)
        return -errno;
    brc_set_ctx("bind rootfs", plan->rootfs);
    if (mount(plan->rootfs, plan->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) return -errno;
    int rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) return -errno;
    for (int i = 0; i < plan->nmounts; i++) {
        int r = do_mount(rootfd, &plan->mounts[i]);
        if (r < 0) { close(rootfd); return r; }
    }
    for (int i = 0; i < plan->ndevices; i++) {
        int r = make_device(rootfd, &plan->devices[i], plan->bind_devices);
        if (r == -EPERM && !plan->bind_devices) r = make_device(rootfd, &plan->devices[i], 1);
        if (r < 0) { close(rootfd); return r; }
    }
    close(rootfd);
    return 0;
}

/* pivot_root into plan->rootfs (or MS_MOVE + chroot with no_pivot). */
int brc_enter_rootfs(const struct brc_plan *plan) {
    brc_set_ctx("chdir", plan->rootfs);
    if (chdir(plan->rootfs) < 0) return -errno;
    if (plan->no_pivot) {
        brc_set_ctx("move rootfs", plan->rootfs);
        if (mount(plan->rootfs, "/", NULL, MS_MOVE, NULL) < 0) return -errno;
        if (chroot(".") < 0) return -errno;
    } else {
        brc_set_ctx("pivot_root", plan->rootfs);
        int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (oldroot < 0) return -errno;
        int newroot = open(plan->rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (newroot < 0) { int e = -errno; close(oldroot); return e; }
        if (syscall(SYS_pivot_root, ".", ".") < 0) { int e = -errno; close(oldroot); close(newroot); return e; }
        if (fchdir(oldroot) < 0) { int e = -errno; close(oldroot); close(newroot); return e; }
        /* Keep the old root's mounts from propagating their unmount back to the host. */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) { int e = -errno; close(oldroot); close(newroot); return e; }
        if (umount2(".", MNT_DETACH) < 0) { int e = -errno; close(oldroot); close(newroot); return e; }
        if (fchdir(newroot) < 0) { int e = -errno; close(oldroot); close(newroot); return e; }
        close(oldroot);
        close(newroot);
    }
    if (chdir("/") < 0) return -errno;
    return 0;
}

/* After pivot_root: read-only paths, masked paths, read-only root, sysctls. */
int brc_finish_rootfs(const struct brc_plan *plan) {
    /* sysctls first: /proc/sys becomes read-only below (readonlyPaths). */
    for (int i = 0; i < plan->nsysctl; i++) {
        brc_set_ctx("sysctl", plan->sysctl_paths[i]);
        int fd = open(plan->sysctl_paths[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) return -errno;
        size_t n = strlen(plan->sysctl_values[i]);
        ssize_t w = write(fd, plan->sysctl_values[i], n);
        int e = errno;
        close(fd);
        if (w < 0) return -e;
    }
    for (int i = 0; i < plan->nreadonly; i++) {
        const char *p = plan->readonly[i];
        brc_set_ctx("readonly path", p);
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            return -errno;
        }
        if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(p), NULL) < 0) return -errno;
    }
    for (int i = 0; i < plan->nmasked; i++) {
        const char *p = plan->masked[i];
        brc_set_ctx("masked path", p);
        struct stat st;
        if (stat(p, &st) < 0) { if (errno == ENOENT) continue; return -errno; }
        int r = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) : mount("/dev/null", p, NULL, MS_BIND, NULL);
        if (r < 0) return -errno;
    }
    if (plan->readonly_root) {
        brc_set_ctx("readonly root", "/");
        if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags("/"), NULL) < 0) return -errno;
    }
    return 0;
}

/* Opens `path` for reading inside the directory tree `root` (e.g. /proc/<pid>/root), symlinks resolved as if
 * `root` were "/" (RESOLVE_IN_ROOT): the container's /etc/passwd can never lead to a host file. fd or -errno. */
int brc_open_in_root(const char *root, const char *path) {
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) return -errno;
    int fd = openat2_in_root(rootfd, path, O_RDONLY);
    close(rootfd);
    return fd;
}
