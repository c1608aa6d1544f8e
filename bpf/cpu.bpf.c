/* On-CPU sampling: one ringbuf event per perf sample (not aggregated: consumers need the
 * pid/tid/cpu/time of each sample); the stack map deduplicates stacks.
 *
 * Defines (all optional): RINGBUF_PAGES, STACK_MAP_SIZE, KNOWN_PIDS_SIZE, FILTER_PIDS (1: only
 * tgids in the pid_filter map, filled by user space after load), INCLUDE_IDLE, USER_STACKS,
 * KERNEL_STACKS. */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>
#include "common.h"

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef STACK_MAP_SIZE
#define STACK_MAP_SIZE 16384
#endif
#ifndef KNOWN_PIDS_SIZE
#define KNOWN_PIDS_SIZE 16384
#endif
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
#endif
#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_STACK_TRACE(stacks, STACK_MAP_SIZE);
BPF_PERCPU_ARRAY(counters, u64, C_NUM);
BPF_TABLE("lru_hash", u32, u8, known_pids, KNOWN_PIDS_SIZE);
BPF_HASH(pid_filter, u32, u8, 4096);

static __always_inline void count(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

static __always_inline s32 stack_id(void *ctx, u64 flags, u32 base) {
    int id = stacks.get_stackid(ctx, flags);
    if (id >= 0)
        return id;
    if (id == -EFAULT)
        count(base + 0);
    else if (id == -EEXIST)
        count(base + 1);
    else if (id == -ENOMEM)
        count(base + 2);
    else
        count(base + 3);
    return id;
}

int on_sample(struct bpf_perf_event_data *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    count(C_SAMPLES);
    if (tgid == 0 && !INCLUDE_IDLE)
        return 0;
#if FILTER_PIDS
    if (!pid_filter.lookup(&tgid))
        return 0;
#endif
    u32 flags = 0;
    /* Kernel addresses have the top bit set on 64-bit architectures. */
    if ((s64)PT_REGS_IP(&ctx->regs) < 0)
        flags |= EVENT_F_KERNEL_MODE;
    u64 wake = BPF_RB_NO_WAKEUP;
    u8 one = 1;
    if (tgid != 0 && !known_pids.lookup(&tgid)) {
        known_pids.update(&tgid, &one);
        flags |= EVENT_F_NEW_PID;
        /* Wake user space now: it snapshots /proc/<pid>/maps while the pid lives. FORCE:
         * the default (adaptive) wakeup is skipped while older no-wakeup records are unread. */
        wake = BPF_RB_FORCE_WAKEUP;
    }
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        count(C_RINGBUF_FULL);
        if (flags & EVENT_F_NEW_PID)
            known_pids.delete(&tgid); /* announce it again with its next sample */
        return 0;
    }
    e->time_ns = bpf_ktime_get_boot_ns();
    e->kind = EVENT_SAMPLE;
    e->flags = flags;
    e->pid = tgid;
    e->tid = tid;
    e->cpu = bpf_get_smp_processor_id();
    e->value = 1;
#if USER_STACKS
    e->user_stack_id = stack_id(ctx, BPF_F_USER_STACK, C_USER_STACK_EFAULT);
#else
    e->user_stack_id = -ENOENT;
#endif
#if KERNEL_STACKS
    if (flags & EVENT_F_KERNEL_MODE)
        e->kernel_stack_id = stack_id(ctx, 0, C_KERNEL_STACK_EFAULT);
    else
        e->kernel_stack_id = -EFAULT; /* user-mode sample: no kernel stack, not an error */
#else
    e->kernel_stack_id = -ENOENT;
#endif
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, wake);
    return 0;
}

static __always_inline int lifecycle(u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (kind == EVENT_EXIT && tgid != (u32)id)
        return 0; /* a thread, not the process, exits */
    if (!known_pids.lookup(&tgid))
        return 0; /* never sampled: nothing to tell user space */
    known_pids.delete(&tgid);
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        count(C_RINGBUF_FULL);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
    return 0;
}

int on_exec(void *ctx) { return lifecycle(EVENT_EXEC); }

int on_exit(void *ctx) { return lifecycle(EVENT_EXIT); }
