/* On-CPU sampling: one ringbuf record per perf sample (not aggregated: consumers need the
 * pid/tid/cpu/time of each sample), carrying its stacks: user frames, then kernel frames.
 *
 * User stacks come from the kernel's frame-pointer walker (bpf_get_stack) or, with
 * UNWIND_TABLES, are unwound from .eh_frame tables (bpf/unwind.h, loaded by collector.unwind);
 * kernel stacks from the kernel's own ORC unwinder (bpf_get_stack). The stack maps of
 * common.h are not used by this program.
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
#endif

/* Every record is built in a per-CPU scratch and sent with ringbuf_output: the event, its user
 * frames, then its kernel frames. Stacks travel in the event, as the OTel eBPF profiler and
 * Parca send them, not as ids into a stack map: a stack map loses stacks to hash collisions
 * and to user space emptying it while the kernel writes (issue #16), and costs 2-3 bpf(2)
 * calls per new id to read and clear. Kernel frames start right after the user frames, so the
 * array has room for the most of both. */
struct sample_out {
    struct event ev;
    u64 frames[2 * EVENT_FRAME_SLOTS];
#if WITH_TABLES && UNWIND_STACK_COPY
    struct unwind_copy copy; /* at EVENT_COPY_OFFSET, sent only with EVENT_F_STACK_COPY */
#endif
};
BPF_PERCPU_ARRAY(sample_scratch, struct sample_out, 1);

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
    u32 zero = 0;
    struct sample_out *out = sample_scratch.lookup(&zero);
    if (!out) {
        count(C_RINGBUF_FULL);
        return 0;
    }
    struct event *e = &out->ev;
    u32 n = 0;
#if WITH_TABLES
    /* The walk comes first, while no other branch's outcome is live: the verifier then sees
     * its loop once, not once per combination of the flags below (which exceeded 1M insns). */
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    int have_regs = unwind_regs_from(&ctx->regs, &regs);
#if UNWIND_STACK_COPY
    /* A process user space has not loaded yet would be walked with frame pointers only
     * (no_process): it gets a copy of its stack instead, which user space unwinds with the
     * tables once it has loaded them (or with frame pointers, from the copy), while the
     * copies' share of the ring allows (unwind_copy_due). The walk is skipped for it, and
     * verified only on the other path. */
    u64 copied = 0;
    if (have_regs && !unwind_procs.lookup(&tgid)) {
        u8 *known = known_pids.lookup(&tgid);
        /* First: a pid BPF has never announced. Not a lost announcement (KNOWN_EXECED after a
         * full ring): each copy would then be forced past the gap while the ring is full. */
        if (unwind_copy_due(!known)) {
            unwind_copy_stack(&regs, &out->copy);
            copied = UNWIND_FRESH(out->copy.len);
            asm volatile("" : "+r"(copied)); /* two tests the verifier sees, not one merged */
            if (copied > UNWIND_STACK_COPY)
                copied = 0;
        }
    }
    if (copied) {
        out->frames[0] = regs.ip;
        n = 1;
        reason = UNWIND_NO_PROCESS;
        unwind_count(reason);
    } else
#endif
    if (have_regs)
        n = unwind_user(&regs, out->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    e->user_stack_id = EVENT_USER_FRAMES(n, reason);
    u32 flags = EVENT_F_USER_FRAMES;
#elif USER_STACKS
    u32 flags = 0;
    long got = bpf_get_stack(ctx, out->frames, (EVENT_FRAME_SLOTS - 1) * 8, BPF_F_USER_STACK);
    if (got > 0) {
        n = (u32)got / 8;
        e->user_stack_id = EVENT_USER_FRAMES(n, 0); /* reason 0: the walk is the kernel's */
        flags = EVENT_F_USER_FRAMES;
    } else { /* no frame at all is what bpf_get_stackid calls -EFAULT */
        e->user_stack_id = got ? (s32)got : -EFAULT;
        count_stack_error(e->user_stack_id, C_USER_STACK_EFAULT);
    }
#else
    u32 flags = 0;
    e->user_stack_id = -ENOENT;
#endif
    n &= EVENT_FRAME_SLOTS - 1;
    /* Kernel addresses have the top bit set on 64-bit architectures. */
    if ((s64)PT_REGS_IP(&ctx->regs) < 0)
        flags |= EVENT_F_KERNEL_MODE;
    u32 nk = 0;
#if KERNEL_STACKS
    if (flags & EVENT_F_KERNEL_MODE) {
        long kgot = bpf_get_stack(ctx, &out->frames[n], EVENT_KERNEL_SLOTS * 8, 0);
        if (kgot > 0) {
            nk = (u32)kgot / 8;
            e->kernel_stack_id = nk;
            flags |= EVENT_F_KERNEL_FRAMES;
        } else {
            e->kernel_stack_id = kgot ? (s32)kgot : -EFAULT;
            count_stack_error(e->kernel_stack_id, C_KERNEL_STACK_EFAULT);
        }
    } else {
        e->kernel_stack_id = -EFAULT; /* user-mode sample: no kernel stack, not an error */
    }
#else
    e->kernel_stack_id = -ENOENT;
#endif
    u64 wake = note_pid(tgid, &flags, periodic_wake());
#if WITH_TABLES
    if (reason == UNWIND_NO_MAPPING)
        wake = unwind_miss_wake(tgid, wake);
#endif
    u64 size = sizeof(struct event) + (n + (nk & (EVENT_FRAME_SLOTS - 1))) * 8;
#if WITH_TABLES && UNWIND_STACK_COPY
    u64 copy_bytes = 0; /* counted in flight (unwind_copy_flow) while the record is */
    /* The process had no tables: send its stack too, for user space to unwind once it has
     * loaded them (a copy wakes the reader: the record is large). On the walk's path
     * `copied` is the constant 0, so the walk's exits add no states here. */
    if (copied > 0 && copied <= UNWIND_STACK_COPY) {
        u64 sized = EVENT_COPY_OFFSET + 32 + copied;
        asm volatile("" : "+r"(sized));
        if (sized > EVENT_COPY_OFFSET + 32 + UNWIND_STACK_COPY)
            sized = EVENT_COPY_OFFSET + 32;
        flags |= EVENT_F_STACK_COPY;
        size = sized;
        copy_bytes = sized;
        wake = BPF_RB_FORCE_WAKEUP;
    }
    if (copy_bytes)
        unwind_copy_sent(copy_bytes);
#endif
    e->time_ns = bpf_ktime_get_boot_ns();
    e->value = 1;
    e->kind = EVENT_SAMPLE;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->weight_threshold = SAMPLE_UNSAMPLED; /* one per perf sample, never rescaled */
    e->flags = flags;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (events.ringbuf_output(out, size, wake) != 0) {
#if WITH_TABLES && UNWIND_STACK_COPY
        if (copy_bytes)
            unwind_copy_sent(-copy_bytes);
#endif
        event_lost(tgid, flags);
        return 0;
    }
    count(C_EVENTS);
    return 0;
}

int on_exec(void *ctx) {
#if WITH_TABLES
    unwind_forget_current();
#endif
    lifecycle_event(EVENT_EXEC);
    return 0;
}

int on_exit(void *ctx) {
#if WITH_TABLES
    unwind_forget_exited();
#endif
    lifecycle_event(EVENT_EXIT);
    return 0;
}
