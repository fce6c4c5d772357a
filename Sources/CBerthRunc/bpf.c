/* Loading and attaching the cgroup v2 device filter (a BPF_PROG_TYPE_CGROUP_DEVICE program built in Swift).
 * bpf(2) has no glibc wrapper and syscall() is variadic, which Swift cannot call. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CBerthRunc.h"

static int sys_bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int brc_devices_filter_attach(int cgroup_fd, const void *insns, uint32_t count, char *log, uint32_t log_size) {
    /* Programs attached before (an earlier create or update): replaced after the new one is in place. */
    uint32_t old_ids[64];
    uint32_t nold = 0, old_flags = 0;
    union bpf_attr q;
    memset(&q, 0, sizeof(q));
    q.query.target_fd = (uint32_t)cgroup_fd;
    q.query.attach_type = BPF_CGROUP_DEVICE;
    q.query.prog_ids = (uint64_t)(uintptr_t)old_ids;
    q.query.prog_cnt = 64;
    if (sys_bpf(BPF_PROG_QUERY, &q) == 0) {
        nold = q.query.prog_cnt;
        old_flags = q.query.attach_flags;
    }

    union bpf_attr l;
    memset(&l, 0, sizeof(l));
    l.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    l.insns = (uint64_t)(uintptr_t)insns;
    l.insn_cnt = count;
    l.license = (uint64_t)(uintptr_t)"Apache";
    if (log && log_size) {
        log[0] = 0;
        l.log_buf = (uint64_t)(uintptr_t)log;
        l.log_size = log_size;
        l.log_level = 1;
    }
    int prog = sys_bpf(BPF_PROG_LOAD, &l);
    if (prog < 0 && log && errno == ENOSPC) {  /* log too small: load again without it */
        l.log_buf = 0; l.log_size = 0; l.log_level = 0;
        prog = sys_bpf(BPF_PROG_LOAD, &l);
    }
    if (prog < 0) return -errno;

    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.target_fd = (uint32_t)cgroup_fd;
    a.attach_bpf_fd = (uint32_t)prog;
    a.attach_type = BPF_CGROUP_DEVICE;
    /* A single program attached without BPF_F_ALLOW_MULTI is replaced by attaching with the same flags. */
    int multi = nold == 0 || (old_flags & BPF_F_ALLOW_MULTI);
    a.attach_flags = multi ? BPF_F_ALLOW_MULTI : old_flags;
    if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) {
        int e = errno;
        close(prog);
        return -e;
    }
    if (multi) {
        for (uint32_t i = 0; i < nold && i < 64; i++) {
            union bpf_attr g;
            memset(&g, 0, sizeof(g));
            g.prog_id = old_ids[i];
            int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &g);
            if (fd < 0) continue;
            union bpf_attr d;
            memset(&d, 0, sizeof(d));
            d.target_fd = (uint32_t)cgroup_fd;
            d.attach_bpf_fd = (uint32_t)fd;
            d.attach_type = BPF_CGROUP_DEVICE;
            sys_bpf(BPF_PROG_DETACH, &d);
            close(fd);
        }
    }
    close(prog);
    return 0;
}
