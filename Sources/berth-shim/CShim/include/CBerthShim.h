// System calls berth-shim needs that Swift's Glibc module does not import (variadic prctl/ioctl, CMSG macros,
// POSIX_SPAWN_SETSID). Each returns 0 (or a value) on success and -errno on failure.
#ifndef CBERTHSHIM_H
#define CBERTHSHIM_H
#include <sys/types.h>
#include <signal.h>

/// Detaches a single-threaded process from its parent: forks, the parent exits 0 at once, the child starts a new
/// session with /dev/null as its standard streams and returns 0. Refuses (-EBUSY) when the process has more than one thread.
int berth_shim_detach(void);
/// prctl(PR_SET_CHILD_SUBREAPER, 1).
int berth_shim_set_subreaper(void);
/// ioctl(TIOCSWINSZ) on a pty master.
int berth_shim_set_winsize(int fd, unsigned short rows, unsigned short cols);
/// Receives one descriptor sent with SCM_RIGHTS on a connected unix socket; returns it or -errno.
int berth_shim_recv_fd(int sock);
/// posix_spawn of `path` with `argv`/`envp`, in a new session when `setsid` is set; fds: for i in 0..<nfds,
/// `fds[i]` becomes descriptor i in the child (-1: /dev/null); every other descriptor is closed by CLOEXEC.
/// `cwd` may be NULL. Returns the pid or -errno.
int berth_shim_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                     const char *cwd, int setsid);
/// mount(2).
int berth_shim_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);
/// umount2(target, MNT_DETACH) when `detach`, else umount(target).
int berth_shim_umount(const char *target, int detach);
/// Blocks every signal berth-shim handles on its own thread (SIGCHLD, SIGTERM, SIGINT, SIGPIPE) in the calling
/// thread; call first in main so that every later thread inherits the mask.
int berth_shim_block_signals(void);
/// Waits for SIGCHLD, SIGTERM or SIGINT; returns the signal number.
int berth_shim_wait_signal(void);
/// pipe2(O_CLOEXEC): fds[0] read end, fds[1] write end.
int berth_shim_pipe(int fds[2]);
/// Sets O_NONBLOCK off on fd.
int berth_shim_set_blocking(int fd);
/// The mount flag for a containerd mount option ("ro", "nosuid", "rbind"…); `clear` is set when the option
/// clears the flag (e.g. "rw"). Returns 0 for options that are data, not flags.
unsigned long berth_shim_mount_flag(const char *option, int *clear);
/// eventfd(0, EFD_CLOEXEC); returns the descriptor or -errno.
int berth_shim_eventfd(void);
/// inotify_init1(IN_CLOEXEC) watching `path` for modification and removal; returns the descriptor or -errno.
int berth_shim_inotify_modify(const char *path);
/// Drops this process' pages of clean, read-only file mappings (its code and constants, libc's), and the pages of
/// the executable's .rodata not copied on write, and marks them MADV_RANDOM (no readahead). The pages stay in the
/// page cache and come back on use; other pages of mappings with private (relocated) pages are left alone.
/// Returns how many ranges were released, or -errno.
int berth_shim_release_clean_pages(void);
/// mallopt(M_ARENA_MAX, 2): a few malloc arenas for the shim's many mostly idle threads.
void berth_shim_limit_malloc_arenas(void);
/// malloc_trim(0).
void berth_shim_trim_heap(void);
/// A shim mostly waits once its task runs: 1 s after the last call here it gives back what the work touched
/// (`berth_shim_trim_heap`, `berth_shim_release_clean_pages`), and again 15 s later, once the start's idle
/// worker threads have exited and its calls' timeout timers have fired, each of which faulted pages back in.
/// The trims run on a thread of their own that never exits, so nothing runs after them to fault pages in again.
void berth_shim_schedule_trims(void);

#endif
