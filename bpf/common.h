/* What every stack-sampling program shares with its Python reader (collector/bpf/events.py):
 * the event layout, the counter indices, the maps, and the known-process bookkeeping that
 * wakes user space to snapshot a new process while it lives.
 *
 * A program defines PROGRAM_COUNTERS (how many counters of its own follow C_COMMON) before
 * including this file. Optional defines: RINGBUF_PAGES, STACK_MAP_SIZE, SPILL_MAP_SIZE,
 * KNOWN_PIDS_SIZE, FILTER_PIDS (1: only tgids in pid_filter, filled by user space after load),
 * WAKE_EVERY, and pidns.h's (PIDNS_TRANSLATE, PIDNS_DEV, PIDNS_INO: pids as the collector's
 * /proc numbers them; every pid a program reports comes from pidns_pid_tgid()). */
#ifndef COLLECTOR_COMMON_H
#define COLLECTOR_COMMON_H

#include <uapi/asm-generic/errno-base.h>

#include "pidns.h"

#define TASK_COMM_LEN 16

/* event.kind */
#define EVENT_SAMPLE 0 /* a sample (cpu) or a finished wait (offcpu) */
#define EVENT_EXEC 1
#define EVENT_EXIT 2

/* event.flags */
#define EVENT_F_NEW_PID 1      /* first event of this tgid since load/exec: snapshot it now */
#define EVENT_F_KERNEL_MODE 2  /* the sample interrupted kernel code */
#define EVENT_F_USER_SPILL 4   /* user_stack_id is an id of stacks_spill, not of stacks */
#define EVENT_F_KERNEL_SPILL 8 /* kernel_stack_id is an id of stacks_spill */
#define EVENT_F_USER_FRAMES 16 /* the user stack follows the event (tables, bpf/unwind.h):
                                * user_stack_id = EVENT_USER_FRAMES(nframes, reason) */
#define EVENT_F_KERNEL_FRAMES 32 /* the kernel stack follows the user frames:
                                  * kernel_stack_id = its number of frames */
#define EVENT_F_STACK_COPY 64 /* a copy of the user stack (struct unwind_copy) follows, at
                               * EVENT_COPY_OFFSET: the walk ended no_process (bpf/unwind.h) */

/* With EVENT_F_USER_FRAMES the record is the 64-byte event then nframes u64 user addresses,
 * leaf first; user_stack_id holds nframes (bits 0-7) and why the walk ended (bits 8-15, enum
 * unwind_reason). Frames per record: at most EVENT_FRAME_SLOTS - 1. With
 * EVENT_F_KERNEL_FRAMES, kernel_stack_id kernel addresses (at most EVENT_KERNEL_SLOTS) follow
 * the user frames, leaf first. */
#define EVENT_FRAME_SLOTS 128
#define EVENT_KERNEL_SLOTS 64
#define EVENT_COPY_OFFSET (64 + 2 * EVENT_FRAME_SLOTS * 8)
#define EVENT_USER_FRAMES(n, reason) ((s32)((((u32)(reason)&0xff) << 8) | ((u32)(n)&0xff)))

/* event.weight_threshold of an event that was not sampled (value taken as is) */
#define SAMPLE_UNSAMPLED 0xffffffffu

/* 64 bytes, little endian: "<QQIIIIIiiI16s" (time_ns, value, kind, flags, pid, tid, cpu,
 * user_stack_id, kernel_stack_id, weight_threshold, comm). Stack ids < 0 are -errno from
 * bpf_get_stackid (-ENOENT when that walk is disabled). weight_threshold: the event was
 * recorded with probability weight_threshold / 2^32 (a draw of bpf_get_prandom_u32() below it);
 * SAMPLE_UNSAMPLED (0xffffffff) means always recorded: its value is not to be scaled. */
struct event {
    u64 time_ns; /* bpf_ktime_get_boot_ns() */
    u64 value;   /* 1 per cpu sample; blocked nanoseconds per off-CPU wait */
    u32 kind;
    u32 flags;
    u32 pid; /* tgid */
    u32 tid;
    u32 cpu;
    s32 user_stack_id;
    s32 kernel_stack_id;
    u32 weight_threshold;
    char comm[TASK_COMM_LEN];
};

/* Index in the per-CPU "counters" array; a program's own counters follow C_COMMON. */
#define C_USER_STACK_EFAULT 0 /* no user stack: kernel thread or exiting task */
#define C_USER_STACK_EEXIST 1 /* hash collision in the stack map */
#define C_USER_STACK_ENOMEM 2 /* stack map full */
#define C_USER_STACK_OTHER 3
#define C_KERNEL_STACK_EFAULT 4
#define C_KERNEL_STACK_EEXIST 5
#define C_KERNEL_STACK_ENOMEM 6
#define C_KERNEL_STACK_OTHER 7
#define C_RINGBUF_FULL 8 /* event lost: bpf_ringbuf_reserve failed */
#define C_EVENTS 9       /* events handed to user space (after every filter) */
#define C_PIDNS_OUTSIDE 10 /* a task the collector's PID namespace cannot see: skipped */
#define C_SELF_SKIPPED 11  /* an event of the collector's own process (profile_self: false) */
#define C_COMMON 12

#ifndef PROGRAM_COUNTERS
#define PROGRAM_COUNTERS 0
#endif
#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 256
#endif
#ifndef STACK_MAP_SIZE
#define STACK_MAP_SIZE 16384
#endif
#ifndef SPILL_MAP_SIZE
#define SPILL_MAP_SIZE 4096
#endif
#ifndef KNOWN_PIDS_SIZE
#define KNOWN_PIDS_SIZE 16384
#endif
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
#endif
#ifndef SELF_TGID /* the collector's own tgid (as its /proc shows it), skipped; 0: none */
#define SELF_TGID 0
#endif
#ifndef WAKE_EVERY
#define WAKE_EVERY 1024
#endif

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_STACK_TRACE(stacks, STACK_MAP_SIZE);
BPF_STACK_TRACE(stacks_spill, SPILL_MAP_SIZE);
BPF_PERCPU_ARRAY(counters, u64, C_COMMON + PROGRAM_COUNTERS);
BPF_TABLE("lru_hash", u32, u8, known_pids, KNOWN_PIDS_SIZE);
BPF_HASH(pid_filter, u32, u8, 4096);

static __always_inline void count(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

/* Walk a stack into `stacks`; when its bucket there holds another stack (-EEXIST: a hash
 * collision, which would last until user space clears the map), into `stacks_spill`, where
 * only such stacks live, so it seldom collides again. Sets `spilled` in *flags then. */
static __always_inline s32 walk_stack(void *ctx, u64 walk_flags, u32 *flags, u32 spilled) {
    s32 id = stacks.get_stackid(ctx, walk_flags);
    if (id == -EEXIST) {
        id = stacks_spill.get_stackid(ctx, walk_flags);
        if (id >= 0)
            *flags |= spilled;
    }
    return id;
}

/* Count why a stack walk failed; base is C_USER_STACK_EFAULT or C_KERNEL_STACK_EFAULT. */
static __always_inline void count_stack_error(s32 id, u32 base) {
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

static __always_inline int pid_selected(u32 tgid) {
#if SELF_TGID
    if (tgid == SELF_TGID) {
        count(C_SELF_SKIPPED);
        return 0;
    }
#endif
#if FILTER_PIDS
    return pid_filter.lookup(&tgid) != 0;
#else
    return 1;
#endif
}

/* Ordinary events do not wake user space (it drains every drain_interval), except every
 * WAKE_EVERY-th of this CPU: user space sets WAKE_EVERY to a quarter of the buffer over all
 * CPUs, so a high rate or many CPUs are drained long before the buffer can overflow. */
static __always_inline u64 periodic_wake(void) {
    u32 idx = C_EVENTS;
    u64 *n = counters.lookup(&idx);
    return (n && (*n % WAKE_EVERY) == WAKE_EVERY - 1) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* known_pids values: KNOWN_ANNOUNCED, or KNOWN_EXECED: user space knows the tgid (so its
 * exit is reported) but not its new image yet (its next event is announced again). */
#define KNOWN_ANNOUNCED 1
#define KNOWN_EXECED 2

/* Mark tgid known; for a new one (or a new image) set EVENT_F_NEW_PID and return a forced
 * wake-up, so user space snapshots /proc/<pid>/maps at once (the default adaptive wake-up is
 * skipped while older no-wakeup records are unread). Otherwise return `wake` unchanged. */
static __always_inline u64 note_pid(u32 tgid, u32 *flags, u64 wake) {
    u8 one = KNOWN_ANNOUNCED;
    if (tgid == 0)
        return wake;
    u8 *known = known_pids.lookup(&tgid);
    if (known && *known == KNOWN_ANNOUNCED)
        return wake;
    known_pids.update(&tgid, &one);
    *flags |= EVENT_F_NEW_PID;
    return BPF_RB_FORCE_WAKEUP;
}

/* A reserve failed: count it, and announce the pid again with its next event (still known,
 * so its exit is reported: harmless if user space never saw it). */
static __always_inline void event_lost(u32 tgid, u32 flags) {
    u8 again = KNOWN_EXECED;
    count(C_RINGBUF_FULL);
    if (flags & EVENT_F_NEW_PID)
        known_pids.update(&tgid, &again);
}

/* Tell user space that a process it has seen execs or exits (a thread's exit is ignored). An
 * exec wakes it at once (it snapshots the new image); an exit waits for the next drain: in an
 * exec storm every sampled process's exit woke the reader, 45 % of its wake-ups, for work
 * that is not urgent (the snapshot is kept for late samples anyway; the walker forgets the
 * process in BPF at its exit, unwind_forget_exited). */
static __always_inline void lifecycle_event(u32 kind) {
    u64 id;
    if (!pidns_pid_tgid(&id))
        return; /* outside the collector's namespace: never reported, so never known */
    u32 tgid = id >> 32;
    if (kind == EVENT_EXIT && tgid != (u32)id)
        return;
    if (!known_pids.lookup(&tgid))
        return; /* never reported: nothing to tell user space */
    if (kind == EVENT_EXIT) {
        known_pids.delete(&tgid);
    } else {
        /* Still known after exec: user space snapshots the new image now and must hear of
         * the exit even if the new image is never sampled (a storm of short execs). */
        u8 execed = KNOWN_EXECED;
        known_pids.update(&tgid, &execed);
    }
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        count(C_RINGBUF_FULL);
        return;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, kind == EVENT_EXIT ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP);
}

#endif
