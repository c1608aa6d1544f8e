/* Heap profiles from the allocator's entry points, sampled by bytes in the kernel.
 *
 * Mode sampled (default): uprobes on malloc, calloc, realloc, free and the aligned allocators,
 * attached per target process by user space (collector/bpf/uprobe.py), which gets these
 * functions as unattached programs. Each thread carries a count of bytes until its next sample,
 * drawn from an exponential distribution of mean SAMPLE_BYTES (the Go and tcmalloc heap
 * samplers: every allocated byte is a sample point with probability 1/SAMPLE_BYTES, so an
 * allocation of s bytes is sampled with probability 1 - exp(-s/SAMPLE_BYTES) whatever its
 * size, and user space weights it by the inverse). The decision is made at entry from the size:
 *  - unsampled: the entry costs the trap, a task-storage lookup and a subtraction; the return
 *    probe (a uretprobe always traps) finds nothing pending and returns;
 *  - sampled: the size is kept in the thread's storage; at return the block's address enters
 *    the `outstanding` map (pid, addr) and one record with the stack goes to the ring.
 * free() of an unsampled block is one failed hash delete. The exponential draws come from
 * `exp_table` (EXP_TABLE_SIZE quantiles filled by user space) indexed by bpf_get_prandom_u32.
 *
 * Mode page_faults (PAGE_FAULTS=1): no allocator probes. exceptions:page_fault_user and
 * brk/mmap entry for the tgids in pid_filter, each with its user stack; with UNWIND_TABLES
 * the faults' stacks are unwound from .eh_frame tables (bpf/unwind.h) and sent in the record.
 *
 * Both: sched_process_exec/exit tell user space when a target execs or exits (it then frees
 * the process's state, so a reused pid never mixes), and an exec whose comm equals
 * BINARY_COMM_LO/HI (the `binary` target's first 16 comm bytes as two little-endian u64) is
 * reported as a candidate. Defines: SAMPLE_BYTES, EXP_TABLE_SIZE (power of two),
 * OUTSTANDING_SIZE, PAGE_FAULTS, BINARY_COMM (1 = match), USER_STACKS and those of common.h. */
#include <uapi/linux/ptrace.h>

#define PROGRAM_COUNTERS 5
#define C_SAMPLED (C_COMMON + 0)           /* allocations sampled at entry */
#define C_OUTSTANDING_FULL (C_COMMON + 1)  /* sampled, but the outstanding map was full */
#define C_SAMPLED_FREES (C_COMMON + 2)     /* frees of sampled blocks */
#define C_ALLOC_FAILED (C_COMMON + 3)      /* a sampled call returned no block */
#define C_STORAGE_FULL (C_COMMON + 4)      /* no task storage: the call was not looked at */
#include "common.h"
#include "heap.h"

#ifndef SAMPLE_BYTES
#define SAMPLE_BYTES 524288
#endif
#ifndef EXP_TABLE_SIZE
#define EXP_TABLE_SIZE 4096
#endif
#ifndef OUTSTANDING_SIZE
#define OUTSTANDING_SIZE 65536
#endif
#ifndef PAGE_FAULTS
#define PAGE_FAULTS 0
#endif
#ifndef BINARY_COMM
#define BINARY_COMM 0
#endif
#ifndef BINARY_COMM_LO
#define BINARY_COMM_LO 0
#endif
#ifndef BINARY_COMM_HI
#define BINARY_COMM_HI 0
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef UNWIND_TABLES
#define UNWIND_TABLES 0
#endif
#if UNWIND_TABLES && PAGE_FAULTS
#include "unwind.h"
#else
#undef UNWIND_TABLES
#define UNWIND_TABLES 0
#endif

static __always_inline s32 user_stack(void *ctx, u32 *flags) {
#if USER_STACKS
    s32 id = walk_stack(ctx, BPF_F_USER_STACK, flags, EVENT_F_USER_SPILL);
    count_stack_error(id, C_USER_STACK_EFAULT);
    return id;
#else
    return -ENOENT;
#endif
}

/* One record; `wake` per common.h (a new pid forces a wake-up so its maps are read). */
static __always_inline int emit(void *ctx, u32 kind, u64 value, u64 addr, s32 stack, u32 flags,
                                u64 id) {
    u32 tgid = id >> 32;
    u64 wake = note_pid(tgid, &flags, periodic_wake());
    struct heap_event *r = events.ringbuf_reserve(sizeof(struct heap_event));
    if (!r) {
        event_lost(tgid, flags);
        return -1;
    }
    r->e.time_ns = bpf_ktime_get_boot_ns();
    r->e.value = value;
    r->e.kind = kind;
    r->e.flags = flags;
    r->e.pid = tgid;
    r->e.tid = (u32)id;
    r->e.cpu = bpf_get_smp_processor_id();
    r->e.user_stack_id = stack;
    r->e.kernel_stack_id = -ENOENT;
    r->e.weight_threshold = SAMPLE_UNSAMPLED;
    bpf_get_current_comm(r->e.comm, sizeof(r->e.comm));
    r->addr = addr;
    count(C_EVENTS);
    events.ringbuf_submit(r, wake);
    return 0;
}

#if !PAGE_FAULTS
struct thread_t {
    s64 left;     /* bytes until this thread's next sample point */
    u64 size;     /* the pending sampled allocation's size */
    u64 memptr;   /* posix_memalign: where the block's address is written */
    u32 pending;  /* an allocation sampled at entry awaits its return */
    u32 armed;    /* left was drawn (a new thread must not sample its first call) */
    u32 depth;    /* allocator calls in progress: one calling another (realloc(NULL, n)
                   * calls malloc in glibc) is counted once, by the outermost */
    u32 pad;
};
BPF_TASK_STORAGE(threads, struct thread_t);
BPF_HASH(outstanding, struct alloc_key, u64, OUTSTANDING_SIZE);
BPF_ARRAY(exp_table, u64, EXP_TABLE_SIZE);

static __always_inline s64 draw(void) {
    u32 i = bpf_get_prandom_u32() & (EXP_TABLE_SIZE - 1);
    u64 *d = exp_table.lookup(&i);
    return d && *d ? (s64)*d : SAMPLE_BYTES;
}

/* An allocation of `size` bytes starts: sample it if it crosses this thread's next point. */
static __always_inline int alloc_entry(u64 size, u64 memptr) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct thread_t *t = threads.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!t) {
        count(C_STORAGE_FULL);
        return 0;
    }
    if (t->depth++)
        return 0;
    if (!t->armed) {
        t->left = draw();
        t->armed = 1;
    }
    t->left -= (s64)size;
    if (t->left > 0)
        return 0;
    /* Memoryless: the distance to the point after the one crossed is a fresh draw. */
    t->left = draw();
    t->pending = 1;
    t->size = size;
    t->memptr = memptr;
    count(C_SAMPLED);
    return 0;
}

/* A sampled allocation returned `addr`: track it and send its record with the stack. */
static __always_inline void alloc_done(void *ctx, u64 addr, u64 size) {
    u64 id;
    if (!pidns_pid_tgid(&id)) {
        count(C_PIDNS_OUTSIDE);
        return;
    }
    if (!addr) {
        count(C_ALLOC_FAILED);
        return;
    }
    u32 flags = 0;
    struct alloc_key k = {.pid = id >> 32, .addr = addr};
    if (outstanding.update(&k, &size) != 0) {
        count(C_OUTSTANDING_FULL);
        flags |= HEAP_F_UNTRACKED;
    }
    s32 stack = user_stack(ctx, &flags);
    if (emit(ctx, HEAP_ALLOC, size, addr, stack, flags, id) != 0 && !(flags & HEAP_F_UNTRACKED))
        outstanding.delete(&k); /* user space never heard of it: keep both sides equal */
}

static __always_inline struct thread_t *pending(void) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct thread_t *t = threads.task_storage_get(task, 0, 0);
    if (!t)
        return 0;
    if (t->depth)
        t->depth--;
    if (t->depth || !t->pending)
        return 0;
    t->pending = 0;
    return t;
}

static __always_inline void block_freed(void *ctx, u64 addr) {
    if (!addr)
        return;
    u64 id;
    if (!pidns_pid_tgid(&id))
        return;
    struct alloc_key k = {.pid = id >> 32, .addr = addr};
    if (outstanding.delete(&k) != 0)
        return; /* not sampled: the common case, one failed delete */
    count(C_SAMPLED_FREES);
    emit(ctx, HEAP_FREE, 0, addr, -ENOENT, 0, id);
}

int on_malloc(struct pt_regs *ctx) { return alloc_entry(PT_REGS_PARM1(ctx), 0); }
int on_calloc(struct pt_regs *ctx) {
    return alloc_entry(PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx), 0);
}
/* memalign(align, size), aligned_alloc(align, size) */
int on_memalign(struct pt_regs *ctx) { return alloc_entry(PT_REGS_PARM2(ctx), 0); }
/* posix_memalign(void **memptr, size_t align, size_t size) returns 0 and writes *memptr */
int on_posix_memalign(struct pt_regs *ctx) {
    return alloc_entry(PT_REGS_PARM3(ctx), PT_REGS_PARM1(ctx));
}
/* realloc(ptr, size): the old block is gone (counted as freed at entry; a failed realloc,
 * which keeps it, is rare enough to be a documented caveat), a new one may come. */
int on_realloc(struct pt_regs *ctx) {
    block_freed(ctx, PT_REGS_PARM1(ctx));
    u64 size = PT_REGS_PARM2(ctx);
    return size ? alloc_entry(size, 0) : 0;
}
int on_free(struct pt_regs *ctx) {
    block_freed(ctx, PT_REGS_PARM1(ctx));
    return 0;
}

int on_alloc_return(struct pt_regs *ctx) {
    struct thread_t *t = pending();
    if (t)
        alloc_done(ctx, PT_REGS_RC(ctx), t->size);
    return 0;
}
int on_posix_memalign_return(struct pt_regs *ctx) {
    struct thread_t *t = pending();
    if (!t)
        return 0;
    u64 addr = 0;
    if (PT_REGS_RC(ctx) == 0 && t->memptr)
        bpf_probe_read_user(&addr, sizeof(addr), (void *)t->memptr);
    alloc_done(ctx, addr, t->size);
    return 0;
}
#else
/* exceptions:page_fault_user: address, ip, error_code */
struct fault_tp {
    u64 common;
    u64 address;
    u64 ip;
    u64 error_code;
};

static __always_inline int target(u64 *id) {
    if (!pidns_pid_tgid(id))
        return 0;
    u32 tgid = *id >> 32;
    return pid_filter.lookup(&tgid) != 0;
}

#if UNWIND_TABLES
/* A fault inside a library without frame pointers (glibc's malloc touching a new page) would
 * be a lone leaf to the kernel's walker: faults are unwound from tables (bpf/unwind.h, loaded
 * per target by collector/bpf/unwinding.py) into a per-CPU record, sent with its frames. */
struct fault_out {
    struct event ev;
    u64 frames[EVENT_FRAME_SLOTS];
};
BPF_PERCPU_ARRAY(fault_scratch, struct fault_out, 1);

/* One record of `kind` with the user stack unwound from tables; value: 1 per fault, the
 * length of an mmap, the requested break of a brk (HEAP_F_BRK). */
static __always_inline void send_unwound(u32 kind, u64 value, u32 flags, u64 id) {
    u32 zero = 0;
    struct fault_out *out = fault_scratch.lookup(&zero);
    if (!out)
        return;
    /* The walk first, while no other branch is live (see cpu.bpf.c). */
    struct unwind_regs regs = {};
    u32 reason = UNWIND_NO_REGS;
    u32 n = 0;
    if (unwind_regs_from(0, &regs))
        n = unwind_user(&regs, out->frames, UNWIND_MAX_FRAMES, &reason);
    else
        unwind_count(reason);
    u32 tgid = id >> 32;
    flags |= EVENT_F_USER_FRAMES;
    u64 wake = note_pid(tgid, &flags, periodic_wake());
    if (reason == UNWIND_NO_MAPPING)
        wake = unwind_miss_wake(tgid, wake);
    struct event *e = &out->ev;
    e->time_ns = bpf_ktime_get_boot_ns();
    e->value = value;
    e->kind = kind;
    e->flags = flags;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->user_stack_id = EVENT_USER_FRAMES(n, reason);
    e->kernel_stack_id = -ENOENT;
    e->weight_threshold = SAMPLE_UNSAMPLED;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    n &= EVENT_FRAME_SLOTS - 1;
    if (events.ringbuf_output(e, sizeof(struct event) + n * 8, wake) != 0) {
        event_lost(tgid, flags);
        return;
    }
    count(C_EVENTS);
}

int on_fault(struct fault_tp *ctx) {
    u64 id;
    if (target(&id))
        send_unwound(HEAP_FAULT, 1, 0, id);
    return 0;
}
#else
int on_fault(struct fault_tp *ctx) {
    u64 id;
    if (!target(&id))
        return 0;
    u32 flags = 0;
    s32 stack = user_stack(ctx, &flags);
    emit(ctx, HEAP_FAULT, 1, ctx->address, stack, flags, id);
    return 0;
}
#endif

/* syscalls:sys_enter_brk (brk) and sys_enter_mmap (addr, len, ...): the args follow the
 * 8-byte common header and the syscall number. brk's growth is known only against the
 * previous break: user space keeps it per process; mmap's is its length. */
struct sys_enter_tp {
    u64 common;
    s64 nr;
    u64 args[6];
};

int on_brk(struct sys_enter_tp *ctx) {
    u64 id;
    if (!target(&id) || !ctx->args[0])
        return 0;
#if UNWIND_TABLES
    send_unwound(HEAP_GROW, ctx->args[0], HEAP_F_BRK, id);
#else
    u32 flags = HEAP_F_BRK;
    s32 stack = user_stack(ctx, &flags);
    emit(ctx, HEAP_GROW, ctx->args[0], 0, stack, flags, id);
#endif
    return 0;
}

int on_mmap(struct sys_enter_tp *ctx) {
    u64 id;
    if (!target(&id))
        return 0;
#if UNWIND_TABLES
    send_unwound(HEAP_GROW, ctx->args[1], 0, id);
#else
    u32 flags = 0;
    s32 stack = user_stack(ctx, &flags);
    emit(ctx, HEAP_GROW, ctx->args[1], 0, stack, flags, id);
#endif
    return 0;
}
#endif

/* Does nothing: benchmarks/heap_overhead.py attaches it to malloc and free for the trap floor. */
int on_empty(struct pt_regs *ctx) { return 0; }

/* An exec or exit record, user space woken at once (it attaches or frees the target). */
static __always_inline int lifecycle(u32 kind, u32 flags, u64 id) {
    struct heap_event *r = events.ringbuf_reserve(sizeof(struct heap_event));
    if (!r) {
        count(C_RINGBUF_FULL);
        return 0;
    }
    __builtin_memset(r, 0, sizeof(*r));
    r->e.time_ns = bpf_ktime_get_boot_ns();
    r->e.kind = kind;
    r->e.flags = flags;
    r->e.pid = id >> 32;
    r->e.tid = (u32)id;
    bpf_get_current_comm(r->e.comm, sizeof(r->e.comm));
    events.ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
    return 0;
}

/* A target execs (its heap is gone) or a process starts running the `binary` target. */
int on_exec(void *ctx) {
    u64 id;
    if (!pidns_pid_tgid(&id))
        return 0;
    u32 tgid = id >> 32;
    u32 flags = 0;
    if (pid_filter.lookup(&tgid)) {
        known_pids.delete(&tgid); /* its next record announces the new image */
#if UNWIND_TABLES
        unwind_procs.delete(&tgid); /* the walker forgets the old image now */
#endif
    } else {
#if BINARY_COMM
        u64 comm[2] = {};
        bpf_get_current_comm(comm, sizeof(comm));
        if (comm[0] != (u64)BINARY_COMM_LO || comm[1] != (u64)BINARY_COMM_HI)
            return 0;
        flags = HEAP_F_CANDIDATE;
#else
        return 0;
#endif
    }
    return lifecycle(EVENT_EXEC, flags, id);
}

/* A target's last thread leaves: it stops being a target in BPF at once, so a process that
 * reuses the pid is not one until user space says so. */
int on_exit(void *ctx) {
    u64 id;
    if (!pidns_pid_tgid(&id))
        return 0;
    u32 tgid = id >> 32;
    if (tgid != (u32)id || !pid_filter.lookup(&tgid))
        return 0;
    pid_filter.delete(&tgid);
    known_pids.delete(&tgid);
    return lifecycle(EVENT_EXIT, 0, id);
}
