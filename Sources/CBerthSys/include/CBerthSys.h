#ifndef CBERTHSYS_H
#define CBERTHSYS_H

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

/// Flags of openat2's `resolve` field (linux/openat2.h), re-exported as plain constants for Swift.
static const unsigned long long berth_resolve_no_magiclinks = RESOLVE_NO_MAGICLINKS;
static const unsigned long long berth_resolve_no_symlinks = RESOLVE_NO_SYMLINKS;
static const unsigned long long berth_resolve_in_root = RESOLVE_IN_ROOT;

/// openat2(2) (Linux 5.6+, no glibc wrapper): opens `path` relative to `dirfd` with `flags` and the `resolve`
/// restrictions. Returns the descriptor, or -1 with errno set (ENOSYS on older kernels, EPERM under some
/// seccomp filters).
static inline int berth_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long resolve) {
#ifdef SYS_openat2
    struct open_how how = {.flags = flags, .mode = 0, .resolve = resolve};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
#else
    errno = ENOSYS;
    return -1;
#endif
}

#endif
