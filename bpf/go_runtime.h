/* What bpf/go_runtime.bpf.c shares with its reader (receivers/go_runtime/events.py): the
 * record layout, the record kinds, the per-process Go facts user space fills in, and the
 * program's own counter indices (after C_COMMON of common.h). */
#ifndef COLLECTOR_GO_RUNTIME_H
#define COLLECTOR_GO_RUNTIME_H

/* go_event.kind */
#define GO_EV_CREATE 1 /* a `go` statement ran: value = the new g's address, goid its goid */
#define GO_EV_SCHED 3  /* runnable -> running: value = nanoseconds runnable */
#define GO_EV_GC 4     /* a GC stop-the-world ended: value = nanoseconds stopped */
#define GO_EV_ALLOC 5  /* an allocation, sampled: value = bytes, weight_threshold set */
#define GO_EV_CHAN 6   /* a goroutine parked on a channel or select was readied: value = ns */
#define GO_EV_ALLOC_SAMPLED 7 /* an allocation the runtime's heap profiler sampled
                               * (profilealloc): value = bytes, aux = MemProfileRate then */
#define GO_EV_PROC_EXIT 8 /* a traced process exited */
#define GO_EV_PROC_EXEC 9 /* a traced process called exec */

#ifndef GO_MAX_FRAMES
#define GO_MAX_FRAMES 64 /* a power of two: the record's size is masked with it */
#endif

/* 72 bytes, then nframes u64 user addresses, leaf first ("<QQQIIIIIIII16s"). */
struct go_event {
    u64 time_ns; /* bpf_ktime_get_boot_ns() */
    u64 value;
    u64 goid;
    u32 kind;
    u32 flags; /* EVENT_F_NEW_PID of common.h */
    u32 pid;   /* tgid */
    u32 tid;
    u32 cpu;
    u32 nframes;
    u32 weight_threshold; /* recorded with probability weight_threshold / 2^32 */
    u32 aux;              /* GO_EV_ALLOC_SAMPLED: the program's MemProfileRate (0: unknown) */
    char comm[16];
    u64 frames[GO_MAX_FRAMES];
};
#define GO_EVENT_HEADER 72

/* Per traced process, from its binary (user space fills it before attaching). Addresses are the
 * process's (load bias added). A channel wait is a gopark whose caller lies in one of the
 * chan ranges (chanrecv, chansend, selectgo): that holds for every Go version, unlike the
 * numeric wait reasons. */
#define GO_CHAN_RANGES 4
struct go_proc {
    u32 goid_offset;     /* of runtime.g */
    u32 sched_pc_offset; /* g.sched.pc: where a descheduled goroutine resumes */
    u32 sched_bp_offset; /* g.sched.bp: its frame pointer there */
    u32 pad;
    u64 chan_lo[GO_CHAN_RANGES];
    u64 chan_hi[GO_CHAN_RANGES];
    u64 mem_profile_rate; /* address of runtime.MemProfileRate (0: unknown) */
    /* A `go` statement: newproc runs newproc.func1 on the system stack, which makes the g
     * and queues it with runqput; a runqput returning into [create_lo, create_hi) is a
     * creation, and its stack starts at newproc_pc (newproc's entry probe site), then the
     * goroutine's frames below newproc ([newproc_lo, newproc_hi)). */
    u64 create_lo;
    u64 create_hi;
    u64 newproc_pc;
    u64 newproc_lo;
    u64 newproc_hi;
};

/* What one goroutine left for later, keyed by (tgid, goid). */
struct go_gkey {
    u32 tgid;
    u32 pad;
    u64 goid;
};
#define G_PARKED_CHAN 1 /* parked on a channel or select */
#define G_RUNNABLE 2    /* readied or created: runnable_ns is set */
struct go_gstate {
    u64 park_ns;
    u64 runnable_ns;
    u32 flags;
    u32 nframes;
    u64 frames[GO_MAX_FRAMES]; /* where it parked (walked at its wake-up: till then frames[0]
                                * is gopark's caller), or, new, the `go` statement's stack */
};

/* counters after C_COMMON (names in receivers/go_runtime/events.py, same order) */
#define C_GO_NOT_READY 0       /* a hit of a process without go_procs entry (exiting) */
#define C_GO_STATE_MISSING 1   /* readied, never seen parking (parked before attach) */
#define C_GO_GOID_READ 2       /* a g's goid could not be read */
#define C_GO_STW_UNPAIRED 3    /* a GC pause whose gcStart was not seen */
#define C_GO_ALLOC_SEEN 4      /* allocation probe hits (mallocgc: every one; profilealloc:
                                * the runtime's samples) */
#define C_GO_SCHED_UNTRACKED 5 /* ran without being queued by runqput: preempted, GC worker,
                                * woken by the network poller */
#define C_GO_RATE_LIMITED 6    /* a scheduling or channel record left out by the sampling */
#define C_GO_COUNTERS 7

#endif
