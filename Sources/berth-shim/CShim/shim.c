#define _GNU_SOURCE
#include "CBerthShim.h"
#include <elf.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <malloc.h>
#include <stdio.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <termios.h>
#include <time.h>
#include <pthread.h>

int berth_shim_detach(void) {
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL) return -errno;
    int threads = 0;
    struct dirent *entry;
    while ((entry = readdir(tasks)) != NULL) {
        if (entry->d_name[0] != '.') threads++;
    }
    closedir(tasks);
    if (threads != 1) return -EBUSY;
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) _exit(0);
    // The parent's standard streams were the starter's (memory files it reads once the parent exits): the shim
    // keeps none of them.
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
    return setsid() < 0 ? -errno : 0;
}

int berth_shim_set_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -errno;
}

int berth_shim_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize size = {.ws_row = rows, .ws_col = cols};
    return ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
}

int berth_shim_recv_fd(int sock) {
    char data[4096];
    struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof(int));
            return fd;
        }
    }
    return -EBADMSG;
}

int berth_shim_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                     const char *cwd, int new_session) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    // Copy every source above both the targets and all sources first, so that no dup2 clobbers a source not
    // yet copied. (A fixed spot such as 100 + i did: with 20 execs at once the shim's own descriptors passed
    // 100, and a process could get another's pipe end as its stdout.)
    int moved[64];
    if (nfds > 64) nfds = 64;
    int base = nfds;
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= base) base = fds[i] + 1;
    for (int i = 0; i < nfds; i++) {
        moved[i] = -1;
        if (fds[i] >= 0) {
            moved[i] = base + i;
            posix_spawn_file_actions_adddup2(&actions, fds[i], moved[i]);
        }
    }
    for (int i = 0; i < nfds; i++) {
        if (moved[i] >= 0) {
            posix_spawn_file_actions_adddup2(&actions, moved[i], i);
            posix_spawn_file_actions_addclose(&actions, moved[i]);
        } else {
            posix_spawn_file_actions_addopen(&actions, i, "/dev/null", O_RDWR, 0);
        }
    }
    if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_session) flags |= POSIX_SPAWN_SETSID;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, flags);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc == 0 ? (int)pid : -rc;
}

int berth_shim_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return mount(source, target, type, flags, data) == 0 ? 0 : -errno;
}

int berth_shim_umount(const char *target, int detach) {
    return umount2(target, detach ? MNT_DETACH : 0) == 0 ? 0 : -errno;
}

int berth_shim_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int berth_shim_wait_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {}
    return sig;
}

int berth_shim_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
}

int berth_shim_set_blocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    return fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 ? 0 : -errno;
}

unsigned long berth_shim_mount_flag(const char *option, int *clear) {
    static const struct { const char *name; int clear; unsigned long flag; } table[] = {
        {"async", 1, MS_SYNCHRONOUS}, {"atime", 1, MS_NOATIME}, {"bind", 0, MS_BIND}, {"defaults", 0, 0},
        {"dev", 1, MS_NODEV}, {"diratime", 1, MS_NODIRATIME}, {"dirsync", 0, MS_DIRSYNC}, {"exec", 1, MS_NOEXEC},
        {"mand", 0, MS_MANDLOCK}, {"noatime", 0, MS_NOATIME}, {"nodev", 0, MS_NODEV},
        {"nodiratime", 0, MS_NODIRATIME}, {"noexec", 0, MS_NOEXEC}, {"nomand", 1, MS_MANDLOCK},
        {"norelatime", 1, MS_RELATIME}, {"nostrictatime", 1, MS_STRICTATIME}, {"nosuid", 0, MS_NOSUID},
        {"rbind", 0, MS_BIND | MS_REC}, {"relatime", 0, MS_RELATIME}, {"remount", 0, MS_REMOUNT},
        {"ro", 0, MS_RDONLY}, {"rw", 1, MS_RDONLY}, {"strictatime", 0, MS_STRICTATIME}, {"suid", 1, MS_NOSUID},
        {"sync", 0, MS_SYNCHRONOUS},
    };
    *clear = 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(option, table[i].name) == 0) {
            *clear = table[i].clear;
            return table[i].flag == 0 && strcmp(option, "defaults") == 0 ? 0 : table[i].flag;
        }
    }
    *clear = -1;  // not a flag: data
    return 0;
}

int berth_shim_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int berth_shim_inotify_modify(const char *path) {
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0) return -errno;
    if (inotify_add_watch(fd, path, IN_MODIFY | IN_DELETE_SELF) < 0) {
        int code = errno;
        close(fd);
        return -code;
    }
    return fd;
}

/* The run-time bounds of this executable's section `name` (from /proc/self/exe's section headers and the load
   address of the main program); 0 when not found. */
static int section_bounds(const char *name, uintptr_t *start, uintptr_t *end) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    Elf64_Ehdr header;
    int found = 0;
    if (pread(fd, &header, sizeof header, 0) == (ssize_t)sizeof header && header.e_shentsize == sizeof(Elf64_Shdr)
        && header.e_shstrndx < header.e_shnum && header.e_shnum < 4096) {
        Elf64_Shdr *sections = calloc(header.e_shnum, sizeof(Elf64_Shdr));
        size_t length = header.e_shnum * sizeof(Elf64_Shdr);
        if (sections != NULL && pread(fd, sections, length, (off_t)header.e_shoff) == (ssize_t)length) {
            Elf64_Shdr names = sections[header.e_shstrndx];
            char *strings = names.sh_size < (1 << 20) ? malloc(names.sh_size + 1) : NULL;
            if (strings != NULL && pread(fd, strings, names.sh_size, (off_t)names.sh_offset) == (ssize_t)names.sh_size) {
                strings[names.sh_size] = 0;
                for (int i = 0; i < header.e_shnum && !found; i++) {
                    if (sections[i].sh_name < names.sh_size && strcmp(strings + sections[i].sh_name, name) == 0
                        && sections[i].sh_addr != 0) {
                        uintptr_t base = (uintptr_t)getauxval(AT_PHDR) - (uintptr_t)header.e_phoff;
                        *start = base + sections[i].sh_addr;
                        *end = *start + sections[i].sh_size;
                        found = 1;
                    }
                }
            }
            free(strings);
        }
        free(sections);
    }
    close(fd);
    return found;
}

/* Ranges to give back, gathered before any is dropped: code that runs after a drop faults its pages back in, and
   the kernel maps 64 kB around each such fault whatever the madvise advice. */
struct ranges {
    uintptr_t start[1024];
    uintptr_t length[1024];
    int count;
};

static void add_range(struct ranges *ranges, uintptr_t start, uintptr_t length) {
    if (ranges->count < 1024 && length > 0) {
        ranges->start[ranges->count] = start;
        ranges->length[ranges->count] = length;
        ranges->count++;
    }
}

/* The runs of pages in [start, end) that are resident and still the file's own (file-backed per
   /proc/self/pagemap, never copied on write). For constants only: a page written between this check and the
   drop would lose the write, and constants are never written. */
static void add_clean_file_pages(struct ranges *ranges, uintptr_t start, uintptr_t end, uintptr_t page) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    uintptr_t first = (start + page - 1) / page, last = end / page;  /* whole pages inside the range only */
    uint64_t entries[512];
    uintptr_t run = 0, runLength = 0;
    for (uintptr_t index = first; index < last; index += 512) {
        uintptr_t count = last - index < 512 ? last - index : 512;
        if (pread(fd, entries, count * 8, (off_t)(index * 8)) != (ssize_t)(count * 8)) break;
        for (uintptr_t i = 0; i < count; i++) {
            /* bit 63: present; bit 61: file page (a copied-on-write page of a private mapping is anonymous) */
            if ((entries[i] >> 63 & 1) && (entries[i] >> 61 & 1)) {
                if (runLength == 0) run = index + i;
                runLength++;
            } else if (runLength > 0) {
                add_range(ranges, run * page, runLength * page);
                runLength = 0;
            }
        }
    }
    if (runLength > 0) add_range(ranges, run * page, runLength * page);
    close(fd);
}

int berth_shim_release_clean_pages(void) {
    static struct ranges ranges;
    ranges.count = 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    FILE *maps = fopen("/proc/self/smaps", "re");
    if (maps == NULL) return -errno;
    char line[4352];
    unsigned long start = 0, end = 0;
    int candidate = 0;
    while (fgets(line, sizeof line, maps) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        int offset = 0;
        // A mapping's header: "lo-hi perms offset dev inode   path"; attribute lines start with a capital.
        if (line[0] >= 'A' && line[0] <= 'Z') {
            unsigned long kb;
            // Anonymous pages of a private file mapping are its copied-on-write (relocated) pages: keep those.
            if (candidate && sscanf(line, "Anonymous: %lu kB", &kb) == 1 && kb != 0) candidate = 0;
            if (candidate && strncmp(line, "VmFlags:", 8) == 0) {
                // Clean, read-only, file-backed: dropping its pages loses nothing, they come back from the page cache.
                add_range(&ranges, start, end - start);
                candidate = 0;
            }
            continue;
        }
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &offset) >= 3) {
            const char *path = offset > 0 ? line + offset : "";
            start = lo;
            end = hi;
            candidate = perms[0] == 'r' && perms[1] != 'w' && path[0] == '/';
        }
    }
    fclose(maps);
    // The static Swift runtime's link puts .rodata (ICU's data among it) in the writable segment, which the loop
    // above keeps for its copied-on-write pages; its constants are given back page by page.
    uintptr_t lo = 0, hi = 0;
    if (section_bounds(".rodata", &lo, &hi)) {
        uintptr_t aligned = lo & ~(page - 1);
        madvise((void *)aligned, hi - aligned, MADV_RANDOM);
        add_clean_file_pages(&ranges, lo, hi, page);
    }
    int released = 0;
    for (int i = 0; i < ranges.count; i++) {
        madvise((void *)ranges.start[i], ranges.length[i], MADV_RANDOM);
        if (madvise((void *)ranges.start[i], ranges.length[i], MADV_DONTNEED) == 0) released++;
    }
    return released;
}

void berth_shim_limit_malloc_arenas(void) {
    mallopt(M_ARENA_MAX, 2);
}

void berth_shim_trim_heap(void) {
    malloc_trim(0);
}

static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t trim_cond;
static struct timespec trim_due[2];
static int trims_pending, trimmer_started;

static int trim_due_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > trim_due[0].tv_sec || (now.tv_sec == trim_due[0].tv_sec && now.tv_nsec >= trim_due[0].tv_nsec);
}

static void *trimmer(void *unused) {
    (void)unused;
    pthread_mutex_lock(&trim_lock);
    for (;;) {
        if (trims_pending == 0) {
            pthread_cond_wait(&trim_cond, &trim_lock);
        } else if (!trim_due_now()) {
            pthread_cond_timedwait(&trim_cond, &trim_lock, &trim_due[0]);
        } else {
            trim_due[0] = trim_due[1];
            trims_pending--;
            pthread_mutex_unlock(&trim_lock);
            berth_shim_trim_heap();
            berth_shim_release_clean_pages();
            pthread_mutex_lock(&trim_lock);
        }
    }
    return NULL;
}

void berth_shim_schedule_trims(void) {
    pthread_mutex_lock(&trim_lock);
    if (!trimmer_started) {
        pthread_condattr_t attributes;
        pthread_condattr_init(&attributes);
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
        pthread_cond_init(&trim_cond, &attributes);
        pthread_condattr_destroy(&attributes);
        pthread_attr_t thread_attributes;
        pthread_attr_init(&thread_attributes);
        pthread_attr_setdetachstate(&thread_attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&thread_attributes, 64 * 1024);
        pthread_t thread;
        trimmer_started = pthread_create(&thread, &thread_attributes, trimmer, NULL) == 0;
        pthread_attr_destroy(&thread_attributes);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    trim_due[0] = now;
    trim_due[0].tv_sec += 1;
    trim_due[1] = now;
    trim_due[1].tv_sec += 16;
    trims_pending = 2;
    pthread_cond_signal(&trim_cond);
    pthread_mutex_unlock(&trim_lock);
}
