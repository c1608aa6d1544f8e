/* On-CPU sampling: one ringbuf event per perf sample (not aggregated: consumers need the
 * pid/tid/cpu/time of each sample); the stack map deduplicates stacks.
 *
 * Defines (all optional), besides those of common.h: INCLUDE_IDLE, USER_STACKS,
 * KERNEL_STACKS. */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>

#define PROGRAM_COUNTERS 1
#define C_PERF_SAMPLES (C_COMMON + 0) /* every perf sample, idle and filtered ones included */
#include "common.h"

#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif

int on_sample(struct bpf_perf_event_data *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    count(C_PERF_SAMPLES);
    if (tgid == 0 && !INCLUDE_IDLE)
        return 0;
    if (!pid_selected(tgid))
        return 0;
    u32 flags = 0;
    /* Kernel addresses have the top bit set on 64-bit architectures. */
    if ((s64)PT_REGS_IP(&ctx->regs) < 0)
        flags |= EVENT_F_KERNEL_MODE;
    u64 wake = note_pid(tgid, &flags, periodic_wake());
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        event_lost(tgid, flags);
        return 0;
    }
    e->time_ns = bpf_ktime_get_boot_ns();
    e->value = 1;
    e->kind = EVENT_SAMPLE;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->weight_threshold = SAMPLE_UNSAMPLED; /* one per perf sample, never rescaled */
#if USER_STACKS
    e->user_stack_id = walk_stack(ctx, BPF_F_USER_STACK, &flags, EVENT_F_USER_SPILL);
    count_stack_error(e->user_stack_id, C_USER_STACK_EFAULT);
#else
    e->user_stack_id = -ENOENT;
#endif
#if KERNEL_STACKS
    if (flags & EVENT_F_KERNEL_MODE) {
        e->kernel_stack_id = walk_stack(ctx, 0, &flags, EVENT_F_KERNEL_SPILL);
        count_stack_error(e->kernel_stack_id, C_KERNEL_STACK_EFAULT);
    } else {
        e->kernel_stack_id = -EFAULT; /* user-mode sample: no kernel stack, not an error */
    }
#else
    e->kernel_stack_id = -ENOENT;
#endif
    e->flags = flags; /* after the walks: they may add the spill flags */
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, wake);
    count(C_EVENTS);
    return 0;
}

int on_exec(void *ctx) {
    lifecycle_event(EVENT_EXEC);
    return 0;
}

int on_exit(void *ctx) {
    lifecycle_event(EVENT_EXIT);
    return 0;
}
