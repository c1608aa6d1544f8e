/* Off-CPU time from sched_switch: how long threads waited, and where (user + kernel stack).
 *
 * Everything happens on the thread switching out, which is `current` (prev) at sched_switch:
 *  - if it goes to sleep (S and/or D, per STATE_MASK), its stack ids, comm and the time go into
 *    its task-local storage (freed with the task: nothing can go stale or fill up);
 *  - the previous switch on this CPU is when it was last switched in, i.e. when its previous
 *    wait ended: that wait, if recorded and within [MIN_BLOCK_NS, MAX_BLOCK_NS], becomes one
 *    ring buffer event (not aggregated: consumers need each wait's pid/tid/time).
 * So a wait is reported at its thread's next switch-out (or exit), and no kernel struct field
 * is read: only tracepoint arguments and helpers. No kprobes. Two hooks:
 *   on_switch_raw  raw tracepoint sched_switch (default, cheaper: no trace record is built);
 *                  needs the prev_state argument (Linux >= 5.18).
 *   on_switch_tp   classic tracepoint sched:sched_switch and its format fields (an ABI).
 * Task storage and bpf_get_current_task_btf need Linux >= 5.11 with BTF.
 *
 * Defines (all optional): STATE_MASK (bit 0: interruptible S, bit 1: uninterruptible D),
 * MIN_BLOCK_NS, MAX_BLOCK_NS, SAMPLE_THRESHOLD (record a switch-out when bpf_get_prandom_u32()
 * is below it; 0 = all), MAX_RATE (recorded switch-outs per second per CPU before adaptive
 * sampling starts; 0 = unlimited), USER_STACKS, KERNEL_STACKS, KERNEL_SKIP (frames of the raw
 * tracepoint's own call path to drop from kernel stacks), UNWIND_TABLES (user stacks from
 * .eh_frame tables, bpf/unwind.h: walked at switch-out into the task's storage, sent after the
 * event), and those of common.h (FILTER_PIDS, STACK_MAP_SIZE, RINGBUF_PAGES, KNOWN_PIDS_SIZE,
 * WAKE_EVERY). */
#include <uapi/linux/ptrace.h>

#define PROGRAM_COUNTERS 5
#define C_STORAGE_FULL (C_COMMON + 0)     /* switch-out not recorded: task storage full */
#define C_ABOVE_MAX_BLOCK (C_COMMON + 1)  /* wait longer than MAX_BLOCK_NS: not emitted */
#define C_RATE_LIMITED (C_COMMON + 2)     /* switch-out not recorded: MAX_RATE sampling */
#define C_BELOW_MIN_BLOCK (C_COMMON + 3)  /* wait shorter than MIN_BLOCK_NS: not emitted */
#define C_NO_SWITCH_IN (C_COMMON + 4)     /* wait whose switch-in was not seen: not emitted */
#include "common.h"

#ifndef STATE_MASK
#define STATE_MASK 3
#endif
#ifndef MIN_BLOCK_NS
#define MIN_BLOCK_NS 1000
#endif
#ifndef MAX_BLOCK_NS
#define MAX_BLOCK_NS 0xffffffffffffffff
#endif
#ifndef SAMPLE_THRESHOLD
#define SAMPLE_THRESHOLD 0
#endif
#ifndef MAX_RATE
#define MAX_RATE 2000
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif
#ifndef KERNEL_SKIP
#define KERNEL_SKIP 0
#endif
#ifndef UNWIND_TABLES
#define UNWIND_TABLES 0
#endif
#define WITH_TABLES (UNWIND_TABLES && USER_STACKS)
#if WITH_TABLES
#include "unwind.h"
#endif

#if SAMPLE_THRESHOLD
#define STATIC_THRESHOLD ((u32)SAMPLE_THRESHOLD)
#else
#define STATIC_THRESHOLD SAMPLE_UNSAMPLED
#endif

/* Adaptive sampling: the rate of candidate switch-outs on a CPU is counted per window of
 * WINDOW_NS; above WINDOW_BUDGET per window, each is recorded with probability
 * WINDOW_BUDGET / n, where n is the larger of this and the previous window's count so far. */
#define WINDOW_NS 100000000ull
#define WINDOW_BUDGET_RAW ((u64)MAX_RATE * WINDOW_NS / 1000000000ull)
#define WINDOW_BUDGET (WINDOW_BUDGET_RAW ? WINDOW_BUDGET_RAW : 1)

struct wait_t {
    u64 time_ns; /* switch-out; 0 = no wait recorded */
    u32 pid;
    u32 threshold; /* recorded with probability threshold / 2^32 (SAMPLE_UNSAMPLED: always) */
    s32 user_stack_id;
    s32 kernel_stack_id;
    u32 stack_flags; /* EVENT_F_*_SPILL: which map the ids are in */
    char comm[TASK_COMM_LEN];
#if WITH_TABLES
    /* The user frames walked at switch-out; ev is filled when the wait ends and sent with the
     * frames that follow it as one record (so no second copy of the stack is needed). */
    struct event ev;
    u64 frames[EVENT_FRAME_SLOTS];
#endif
};

BPF_TASK_STORAGE(waits, struct wait_t);
struct cpu_state_t {
    u64 last_switch;  /* time of the previous switch on this CPU */
    u64 window_start; /* rate window */
    u64 seen;         /* candidate switch-outs in this window */
    u64 prev_seen;    /* ... and in the previous one */
};
BPF_PERCPU_ARRAY(cpu_state, struct cpu_state_t, 1);

/* The wait recorded in w ended at t_in (when current was switched back in): report it. */
static __always_inline void finish_wait(struct wait_t *w, u64 t_in, u32 tid) {
    u64 t_out = w->time_ns;
    w->time_ns = 0;
    if (t_in <= t_out) {
        count(C_NO_SWITCH_IN); /* no switch seen on this CPU since load */
        return;
    }
    u64 delta = t_in - t_out;
    if (delta < MIN_BLOCK_NS) {
        count(C_BELOW_MIN_BLOCK);
        return;
    }
    if (delta > MAX_BLOCK_NS) {
        count(C_ABOVE_MAX_BLOCK);
        return;
    }
    u32 pid = w->pid;
    u32 flags = w->stack_flags;
    u64 wake = note_pid(pid, &flags, periodic_wake());
#if WITH_TABLES
    if ((((u32)w->user_stack_id >> 8) & 0xff) == UNWIND_NO_MAPPING)
        wake = unwind_miss_wake(pid, wake);
    struct event *e = &w->ev;
#else
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        event_lost(pid, flags);
        return;
    }
#endif
    e->time_ns = t_in;
    e->value = delta;
    e->kind = EVENT_SAMPLE;
    e->flags = flags;
    e->pid = pid;
    e->tid = tid;
    e->cpu = bpf_get_smp_processor_id();
    e->user_stack_id = w->user_stack_id;
    e->kernel_stack_id = w->kernel_stack_id;
    e->weight_threshold = w->threshold;
    __builtin_memcpy(e->comm, w->comm, sizeof(e->comm));
#if WITH_TABLES
    u32 size = sizeof(struct event) + ((u32)w->user_stack_id & (EVENT_FRAME_SLOTS - 1)) * 8;
    if (events.ringbuf_output(e, size, wake) != 0) {
        event_lost(pid, flags);
        return;
    }
#else
    events.ringbuf_submit(e, wake);
#endif
    count(C_EVENTS);
    /* counted per emitted event, so the counters describe what user space receives */
    count_stack_error(w->user_stack_id, C_USER_STACK_EFAULT);
    count_stack_error(w->kernel_stack_id, C_KERNEL_STACK_EFAULT);
}

/* Every switch on this CPU: current (prev) has run since the previous switch here, so that
 * switch's time is when current's last wait ended. Everything is done on current, through
 * task-local storage: no lookup for `next`, no map that stale entries could fill. */
static __always_inline void on_switch(void *ctx, u32 sleeping) {
    u64 now = bpf_ktime_get_boot_ns();
    u32 zero = 0;
    struct cpu_state_t *cs = cpu_state.lookup(&zero);
    if (!cs)
        return;
    u64 t_in = cs->last_switch;
    cs->last_switch = now;
    u64 id = bpf_get_current_pid_tgid();
    if ((u32)id == 0)
        return; /* idle */
    if (!pidns_pid_tgid(&id)) {
        count(C_PIDNS_OUTSIDE); /* never recorded, so it has no wait to finish either */
        return;
    }
    u32 tid = (u32)id;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct wait_t *w = waits.task_storage_get(task, 0, 0);
    if (w && w->time_ns)
        finish_wait(w, t_in, tid);
    if (!sleeping)
        return; /* preempted or yielding: runnable, not waiting */
    u32 tgid = id >> 32;
    if (!pid_selected(tgid))
        return;
    u32 threshold = STATIC_THRESHOLD;
#if MAX_RATE
    u64 since = now - cs->window_start;
    if (since >= WINDOW_NS) {
        cs->prev_seen = since >= 2 * WINDOW_NS ? 0 : cs->seen; /* idle windows saw nothing */
        cs->seen = 0;
        cs->window_start = now;
    }
    u64 seen = ++cs->seen;
    u64 n = seen > cs->prev_seen ? seen : cs->prev_seen;
    if (n > WINDOW_BUDGET) {
        u64 adaptive = (WINDOW_BUDGET << 32) / n; /* < 2^32 since n > budget */
        if (adaptive < threshold)
            threshold = adaptive ? (u32)adaptive : 1;
    }
#endif
    if (threshold != SAMPLE_UNSAMPLED) {
        u32 draw = bpf_get_prandom_u32();
        if (draw >= threshold) {
            if (draw < STATIC_THRESHOLD)
                count(C_RATE_LIMITED); /* sample_ratio alone would have recorded it */
            return;
        }
    }
    if (!w) {
        w = waits.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
        if (!w) {
            count(C_STORAGE_FULL);
            return;
        }
    }
    w->pid = tgid;
    w->threshold = threshold;
    u32 stack_flags = 0;
#if WITH_TABLES
    /* current is the task switching out: its user registers are those saved at kernel entry */
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    u32 nframes = 0;
    if (unwind_regs_from(0, &regs))
        nframes = unwind_user(&regs, w->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    w->user_stack_id = EVENT_USER_FRAMES(nframes, reason);
    stack_flags |= EVENT_F_USER_FRAMES;
#elif USER_STACKS
    w->user_stack_id = walk_stack(ctx, BPF_F_USER_STACK, &stack_flags, EVENT_F_USER_SPILL);
#else
    w->user_stack_id = -ENOENT;
#endif
#if KERNEL_STACKS
    w->kernel_stack_id = walk_stack(ctx, KERNEL_SKIP, &stack_flags, EVENT_F_KERNEL_SPILL);
#else
    w->kernel_stack_id = -ENOENT;
#endif
    w->stack_flags = stack_flags;
    bpf_get_current_comm(w->comm, sizeof(w->comm));
    w->time_ns = bpf_ktime_get_boot_ns(); /* after the walks: they are not waiting time */
}

/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
 *          unsigned int prev_state): prev_state is the raw __state word. A preempted task is
 * runnable, not waiting. TASK_NOLOAD (0x400) marks idle kernel workers (TASK_IDLE), which the
 * tracepoint reports as "I", not "D": they are not counted as uninterruptible waits. */
int on_switch_raw(struct bpf_raw_tracepoint_args *ctx) {
    u64 preempt = ctx->args[0];
    u32 state = (u32)ctx->args[3];
    u32 bits = 0;
    if (!preempt) {
        if (state & 0x1)
            bits = 1;
        else if ((state & 0x2) && !(state & 0x400))
            bits = 2;
    }
    on_switch(ctx, bits & STATE_MASK);
    return 0;
}

/* The classic tracepoint's record, as /sys/kernel/tracing/events/sched/sched_switch/format
 * describes it. prev_state is the reported state: S = 0x1, D = 0x2, idle workers 0x80,
 * preempted 0x100 (TASK_REPORT_MAX), running 0. */
struct sched_switch_tp {
    u64 common;
    char prev_comm[TASK_COMM_LEN];
    s32 prev_pid;
    s32 prev_prio;
    s64 prev_state;
    char next_comm[TASK_COMM_LEN];
    s32 next_pid;
    s32 next_prio;
};

int on_switch_tp(struct sched_switch_tp *ctx) {
    s64 state = ctx->prev_state;
    on_switch(ctx, (state == 1 || state == 2) && (state & STATE_MASK));
    return 0;
}

/* An exiting thread's last wait would otherwise be reported at its next switch-out, which
 * never comes: report it now. It has run since the last switch on this CPU. */
int on_exit(void *ctx) {
    u64 id;
    if (!pidns_pid_tgid(&id))
        return 0; /* outside the collector's namespace: nothing was recorded for it */
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct wait_t *w = waits.task_storage_get(task, 0, 0);
    u32 zero = 0;
    struct cpu_state_t *cs = cpu_state.lookup(&zero);
    if (w && w->time_ns && cs)
        finish_wait(w, cs->last_switch, (u32)id);
#if WITH_TABLES
    unwind_forget_exited();
#endif
    lifecycle_event(EVENT_EXIT);
    return 0;
}

int on_exec(void *ctx) {
#if WITH_TABLES
    unwind_forget_current();
#endif
    lifecycle_event(EVENT_EXEC);
    return 0;
}
