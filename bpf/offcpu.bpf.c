/* Off-CPU time from sched_switch: how long threads waited, and where (user + kernel stack).
 *
 * At switch-out (prev == current) the blocked thread's stack ids, ids, comm and the time go into
 * an LRU hash; at switch-in (next) the entry is taken out and, if the block lasted within
 * [MIN_BLOCK_NS, MAX_BLOCK_NS], one event goes to the ring buffer (not aggregated: consumers
 * need each wait's pid/tid/time). Only tracepoints, never kprobes. Two hooks:
 *   on_switch_raw  raw tracepoint sched_switch (default; cheaper: no trace record is built).
 *                  Keyed by the task_struct pointer, so no kernel struct offset is ever read.
 *                  Needs the prev_state argument (Linux >= 5.18).
 *   on_switch_tp   classic tracepoint sched:sched_switch, its format fields (an ABI), keyed by tid.
 *
 * Defines (all optional): STATE_MASK (bit 0: interruptible S, bit 1: uninterruptible D),
 * MIN_BLOCK_NS, MAX_BLOCK_NS, SAMPLE_THRESHOLD (keep a switch-out when bpf_get_prandom_u32() is
 * below it; 0 = keep all), FILTER_PIDS (1: only tgids in pid_filter, filled by user space),
 * USER_STACKS, KERNEL_STACKS, KERNEL_SKIP (frames of the raw tracepoint's own call path to drop
 * from kernel stacks), START_MAP_SIZE, STACK_MAP_SIZE, RINGBUF_PAGES, WAKE_EVERY, KNOWN_PIDS_SIZE. */
#include <uapi/linux/ptrace.h>

#include "offcpu.h"

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
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
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
#ifndef START_MAP_SIZE
#define START_MAP_SIZE 16384
#endif
#ifndef STACK_MAP_SIZE
#define STACK_MAP_SIZE 16384
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef WAKE_EVERY
#define WAKE_EVERY 1024
#endif
#ifndef KNOWN_PIDS_SIZE
#define KNOWN_PIDS_SIZE 16384
#endif

struct start_t {
    u64 time_ns;
    u32 pid;
    u32 tid;
    s32 user_stack_id;
    s32 kernel_stack_id;
    char comm[TASK_COMM_LEN];
};

BPF_TABLE("lru_hash", u64, struct start_t, start, START_MAP_SIZE);
BPF_STACK_TRACE(stacks, STACK_MAP_SIZE);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(counters, u64, OC_NUM);
BPF_TABLE("lru_hash", u32, u8, known_pids, KNOWN_PIDS_SIZE);
BPF_HASH(pid_filter, u32, u8, 4096);

static __always_inline void count(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

/* The thread switching out is current: helpers give its ids, comm and stacks. */
static __always_inline void switch_out(void *ctx, u64 key) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if ((u32)id == 0)
        return; /* idle */
#if FILTER_PIDS
    if (!pid_filter.lookup(&tgid))
        return;
#endif
#if SAMPLE_THRESHOLD
    if (bpf_get_prandom_u32() >= (u32)SAMPLE_THRESHOLD)
        return;
#endif
    struct start_t s = {};
    s.pid = tgid;
    s.tid = (u32)id;
#if USER_STACKS
    s.user_stack_id = stacks.get_stackid(ctx, BPF_F_USER_STACK);
#else
    s.user_stack_id = -ENOENT;
#endif
#if KERNEL_STACKS
    s.kernel_stack_id = stacks.get_stackid(ctx, KERNEL_SKIP);
#else
    s.kernel_stack_id = -ENOENT;
#endif
    bpf_get_current_comm(s.comm, sizeof(s.comm));
    s.time_ns = bpf_ktime_get_boot_ns(); /* last, so the walks above are not counted */
    if (start.update(&key, &s) != 0)
        count(OC_START_MAP_FULL);
}

static __always_inline void count_stack(s32 id, u32 base) {
    if (id >= 0 || id == -ENOENT)
        return;
    if (id == -EFAULT)
        count(base + 0);
    else if (id == -EEXIST)
        count(base + 1);
    else if (id == -ENOMEM)
        count(base + 2);
    else
        count(base + 3);
}

static __always_inline void switch_in(u64 key) {
    struct start_t *sp = start.lookup(&key);
    if (!sp)
        return;
    struct start_t s = *sp;
    start.delete(&key);
    u64 now = bpf_ktime_get_boot_ns();
    u64 delta = now - s.time_ns;
    if (delta < MIN_BLOCK_NS)
        return;
    if (delta > MAX_BLOCK_NS) {
        count(OC_ABOVE_MAX_BLOCK);
        return;
    }
    u32 flags = 0;
    u64 wake = BPF_RB_NO_WAKEUP;
    u8 one = 1;
    if (!known_pids.lookup(&s.pid)) {
        known_pids.update(&s.pid, &one);
        flags |= OC_F_NEW_PID;
        /* user space snapshots /proc/<pid>/maps at once, while the process lives */
        wake = BPF_RB_FORCE_WAKEUP;
    } else {
        /* Every WAKE_EVERY events per CPU, wake the reader so the buffer is drained before
         * it overflows (user space sizes WAKE_EVERY to a quarter of the buffer over all CPUs). */
        u32 idx = OC_EVENTS;
        u64 *n = counters.lookup(&idx);
        if (n && (*n % WAKE_EVERY) == WAKE_EVERY - 1)
            wake = BPF_RB_FORCE_WAKEUP;
    }
    struct offcpu_event *e = events.ringbuf_reserve(sizeof(struct offcpu_event));
    if (!e) {
        count(OC_RINGBUF_FULL);
        if (flags & OC_F_NEW_PID)
            known_pids.delete(&s.pid); /* announce it again with its next event */
        return;
    }
    e->time_ns = now;
    e->blocked_ns = delta;
    e->kind = OC_EVENT_WAIT;
    e->flags = flags;
    e->pid = s.pid;
    e->tid = s.tid;
    e->user_stack_id = s.user_stack_id;
    e->kernel_stack_id = s.kernel_stack_id;
    e->cpu = bpf_get_smp_processor_id();
    e->_pad = 0;
    __builtin_memcpy(e->comm, s.comm, sizeof(e->comm));
    events.ringbuf_submit(e, wake);
    count(OC_EVENTS);
    /* counted per emitted event, so the counters describe what user space receives */
    count_stack(s.user_stack_id, OC_USER_STACK_EFAULT);
    count_stack(s.kernel_stack_id, OC_KERNEL_STACK_EFAULT);
}

/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
 *          unsigned int prev_state): prev_state is the raw __state word. A preempted task is
 * runnable, not waiting. TASK_NOLOAD (0x400) marks idle kernel workers (TASK_IDLE), which the
 * tracepoint reports as "I", not "D": they are not counted as uninterruptible waits. */
int on_switch_raw(struct bpf_raw_tracepoint_args *ctx) {
    u64 preempt = ctx->args[0];
    u64 prev = ctx->args[1];
    u64 next = ctx->args[2];
    u32 state = (u32)ctx->args[3];
    u32 bits = 0;
    if (!preempt) {
        if (state & 0x1)
            bits = 1;
        else if ((state & 0x2) && !(state & 0x400))
            bits = 2;
    }
    if (bits & STATE_MASK)
        switch_out(ctx, prev);
    switch_in(next);
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
    if ((state == 1 || state == 2) && (state & STATE_MASK))
        switch_out(ctx, (u64)(u32)ctx->prev_pid);
    if (ctx->next_pid != 0)
        switch_in((u64)(u32)ctx->next_pid);
    return 0;
}

static __always_inline void lifecycle(u32 kind, u64 start_key) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (kind == OC_EVENT_EXIT) {
        /* A thread cannot exit while blocked, so an entry here means a missed switch-in. */
        if (start.lookup(&start_key)) {
            start.delete(&start_key);
            count(OC_STALE_AT_EXIT);
        }
        if (tgid != (u32)id)
            return; /* a thread, not the process, exits */
    }
    if (!known_pids.lookup(&tgid))
        return; /* never reported: nothing to tell user space */
    known_pids.delete(&tgid);
    struct offcpu_event *e = events.ringbuf_reserve(sizeof(struct offcpu_event));
    if (!e) {
        count(OC_RINGBUF_FULL);
        return;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

int on_exec(void *ctx) {
    lifecycle(OC_EVENT_EXEC, 0);
    return 0;
}

/* The start map key of the exiting thread depends on the switch hook. */
int on_exit_raw(void *ctx) {
    lifecycle(OC_EVENT_EXIT, bpf_get_current_task());
    return 0;
}

int on_exit_tp(void *ctx) {
    lifecycle(OC_EVENT_EXIT, (u64)(u32)bpf_get_current_pid_tgid());
    return 0;
}
