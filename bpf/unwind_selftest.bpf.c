/* Self-test of bpf/unwind.h: a perf-event program that unwinds the user stacks of the processes
 * in pid_filter and sends each one to user space; uw_fp does the same with the kernel's
 * frame-pointer walker (bpf_get_stack), the baseline the tables are measured against;
 * uw_switch unwinds tasks as they switch out (what the offcpu receiver needs).
 * Loaded by collector.unwind.selftest and tests/collector/unwind. */
#include <uapi/linux/bpf_perf_event.h>
#include <uapi/linux/ptrace.h>

#include "unwind.h"

#define MODE_TABLES 0
#define MODE_FP 1
#define MODE_SWITCH 2 /* a task switching out (sched_switch), unwound from its saved regs */
#define SAMPLE_F_KERNEL 1 /* the sample interrupted kernel code */
#define OUT_SLOTS 128

/* 16-byte header then nframes u64 addresses, leaf first; a record is 16 + 8 * nframes bytes. */
struct unwind_sample {
    u32 pid;
    u32 tid;
    u8 mode;
    u8 reason;
    u16 nframes;
    u32 flags;
    u64 frames[OUT_SLOTS];
};

BPF_RINGBUF_OUTPUT(events, 256);
BPF_PERCPU_ARRAY(scratch, struct unwind_sample, 1);
BPF_HASH(pid_filter, u32, u8, 64);
BPF_PERCPU_ARRAY(lost, u64, 1);

static __always_inline struct unwind_sample *begin(u8 mode, u32 flags) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!pid_filter.lookup(&tgid))
        return 0;
    u32 zero = 0;
    struct unwind_sample *s = scratch.lookup(&zero);
    if (!s)
        return 0;
    s->pid = tgid;
    s->tid = (u32)id;
    s->mode = mode;
    s->flags = flags;
    return s;
}

static __always_inline void finish(struct unwind_sample *s, u32 n) {
    s->nframes = n;
    u32 size = 16 + (n & (OUT_SLOTS - 1)) * 8;
    if (events.ringbuf_output(s, size, 0) != 0) {
        u32 zero = 0;
        u64 *v = lost.lookup(&zero);
        if (v)
            (*v)++;
    }
}

static __always_inline u32 sample_flags(struct bpf_perf_event_data *ctx) {
    return (s64)PT_REGS_IP(&ctx->regs) < 0 ? SAMPLE_F_KERNEL : 0;
}

int uw_tables(struct bpf_perf_event_data *ctx) {
    struct unwind_sample *s = begin(MODE_TABLES, sample_flags(ctx));
    if (!s)
        return 0;
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    u32 n = 0;
    if (unwind_regs_from(&ctx->regs, &regs))
        n = unwind_user(&regs, s->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    s->reason = reason;
    finish(s, n);
    return 0;
}

int uw_fp(struct bpf_perf_event_data *ctx) {
    struct unwind_sample *s = begin(MODE_FP, sample_flags(ctx));
    if (!s)
        return 0;
    long got = bpf_get_stack(ctx, s->frames, UNWIND_MAX_FRAMES * 8, BPF_F_USER_STACK);
    s->reason = UNWIND_FP_END;
    finish(s, got > 0 ? (u32)((u64)got / 8) : 0);
    return 0;
}

/* sched_switch runs in the context of the task switching out (prev): its user registers are
 * the pt_regs saved when it entered the kernel, which is what an off-CPU profiler unwinds. */
int uw_switch(struct bpf_raw_tracepoint_args *ctx) {
    struct unwind_sample *s = begin(MODE_SWITCH, SAMPLE_F_KERNEL);
    if (!s)
        return 0;
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    u32 n = 0;
    if (unwind_regs_from(0, &regs))
        n = unwind_user(&regs, s->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    s->reason = reason;
    finish(s, n);
    return 0;
}
