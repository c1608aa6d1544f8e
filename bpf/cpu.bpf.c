/* On-CPU sampling: one ringbuf event per perf sample (not aggregated: consumers need the
 * pid/tid/cpu/time of each sample); the stack map deduplicates stacks.
 *
 * With UNWIND_TABLES the user stack is unwound from .eh_frame tables (bpf/unwind.h, loaded by
 * collector.unwind) and sent after the event (a variable-length record from a per-CPU
 * scratch); kernel stacks stay in the stack map (the kernel's own ORC unwinder).
 *
 * Defines (all optional), besides those of common.h: INCLUDE_IDLE, USER_STACKS,
 * KERNEL_STACKS, UNWIND_TABLES (and those of unwind.h). */
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
#ifndef UNWIND_TABLES
#define UNWIND_TABLES 0
#endif
#define WITH_TABLES (UNWIND_TABLES && USER_STACKS)

#if WITH_TABLES
#include "unwind.h"
struct sample_out {
    struct event ev;
    u64 frames[EVENT_FRAME_SLOTS];
};
BPF_PERCPU_ARRAY(sample_scratch, struct sample_out, 1);
#endif

int on_sample(struct bpf_perf_event_data *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    count(C_PERF_SAMPLES);
    if (tgid == 0 && !INCLUDE_IDLE)
        return 0;
    /* Idle (pid 0 everywhere) is told by its host pid; the rest by the collector's pids. */
    if (tgid != 0) {
        if (!pidns_pid_tgid(&id)) {
            count(C_PIDNS_OUTSIDE);
            return 0;
        }
        tgid = id >> 32;
    }
    if (!pid_selected(tgid))
        return 0;
#if WITH_TABLES
    /* The walk comes first, while no other branch's outcome is live: the verifier then sees
     * its loop once, not once per combination of the flags below (which exceeded 1M insns). */
    u32 zero = 0;
    struct sample_out *out = sample_scratch.lookup(&zero);
    if (!out) {
        count(C_RINGBUF_FULL);
        return 0;
    }
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    u32 n = 0;
    if (unwind_regs_from(&ctx->regs, &regs))
        n = unwind_user(&regs, out->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    struct event *e = &out->ev;
    e->user_stack_id = EVENT_USER_FRAMES(n, reason);
    u32 flags = EVENT_F_USER_FRAMES;
#else
    u32 flags = 0;
#endif
    /* Kernel addresses have the top bit set on 64-bit architectures. */
    if ((s64)PT_REGS_IP(&ctx->regs) < 0)
        flags |= EVENT_F_KERNEL_MODE;
    u64 wake = note_pid(tgid, &flags, periodic_wake());
#if !WITH_TABLES
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        event_lost(tgid, flags);
        return 0;
    }
#endif
    e->time_ns = bpf_ktime_get_boot_ns();
    e->value = 1;
    e->kind = EVENT_SAMPLE;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->weight_threshold = SAMPLE_UNSAMPLED; /* one per perf sample, never rescaled */
#if WITH_TABLES
    /* walked above */
#elif USER_STACKS
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
#if WITH_TABLES
    u32 size = sizeof(struct event) + (n & (EVENT_FRAME_SLOTS - 1)) * 8;
    if (events.ringbuf_output(out, size, wake) != 0) {
        event_lost(tgid, flags);
        return 0;
    }
#else
    events.ringbuf_submit(e, wake);
#endif
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
