/* Go runtime events from uprobes on unmodified Go binaries (receivers/go_runtime).
 *
 * Never a uretprobe: Go moves goroutine stacks, and a rewritten return address crashes the
 * program. A function's return is seen by plain uprobes on each of its RET instructions
 * (found by disassembly in user space). Arguments follow Go's register ABI (amd64: RAX, RBX,
 * RCX, ...; the current g in R14). Goroutine stacks are walked here with frame pointers,
 * which Go always keeps: at a function's entry probe (its `push rbp`, right after the stack
 * check) the caller's return address is at [RSP], the rest follow RBP.
 *
 * Defines: ALLOC_RATE (bytes: an allocation of size s is recorded with probability
 * min(1, s / ALLOC_RATE), and scaled back in user space), GSTATE_SIZE, GO_MAX_FRAMES, and
 * those of common.h. */
#include <uapi/linux/ptrace.h>

#define PROGRAM_COUNTERS 7 /* C_GO_COUNTERS of go_runtime.h (common.h sizes the array first) */
#ifndef STACK_MAP_SIZE
#define STACK_MAP_SIZE 1 /* common.h's stack maps are unused: stacks travel in the record */
#endif
#ifndef SPILL_MAP_SIZE
#define SPILL_MAP_SIZE 1
#endif
#include "common.h"
#include "go_runtime.h"

#ifndef ALLOC_RATE
#define ALLOC_RATE (512 * 1024)
#endif
#ifndef GSTATE_SIZE
#define GSTATE_SIZE 16384
#endif
#ifndef WANT_CREATE
#define WANT_CREATE 1 /* send GO_EV_CREATE records (the goroutines signal) */
#endif
#ifndef MAX_PER_SLOT
#define MAX_PER_SLOT 200 /* scheduling and channel records per CPU per RATE_SLOT_NS, each */
#endif
#define RATE_SLOT_NS 100000000ull

BPF_HASH(go_procs, u32, struct go_proc, 4096);
BPF_TABLE("lru_hash", struct go_gkey, struct go_gstate, gstate, GSTATE_SIZE);
BPF_HASH(gc_stack, u32, struct go_event, 4096);       /* by tgid: the last gcStart */
BPF_HASH(stw_start, u32, u64, 4096);                  /* by tgid: a GC stop-the-world */
BPF_PERCPU_ARRAY(ev_scratch, struct go_event, 1);
BPF_PERCPU_ARRAY(g_scratch, struct go_gstate, 1);
struct rate_slot {
    u64 start_ns;
    u32 n[2]; /* GO_EV_SCHED, GO_EV_CHAN */
};
BPF_PERCPU_ARRAY(rate, struct rate_slot, 1);

static __always_inline void go_count(u32 idx) { count(C_COMMON + idx); }

/* The process's Go facts. Its uprobes are attached only after user space filled them in,
 * so a miss is a process that is going away. */
static __always_inline struct go_proc *go_proc_of(u32 tgid) {
    struct go_proc *p = go_procs.lookup(&tgid);
    if (!p)
        go_count(C_GO_NOT_READY);
    return p;
}

static __always_inline u64 goid_of(struct go_proc *p, u64 g) {
    u64 goid = 0;
    if (!g || bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + p->goid_offset)) != 0) {
        go_count(C_GO_GOID_READ);
        return 0;
    }
    return goid;
}

/* The frame-pointer chain from bp into frames[first..]: at most GO_MAX_FRAMES - 1 frames in
 * all (the record's size is masked). Frames grow towards higher addresses: a chain that
 * does not is a loop, or a switch of stacks, and ends the walk. */
static __always_inline u32 walk_fp(u64 bp, u64 *frames, const int first) {
    u32 n = first;
    for (int i = first; i < GO_MAX_FRAMES - 1; i++) {
        u64 pair[2] = {};
        if (!bp || bpf_probe_read_user(pair, sizeof(pair), (void *)bp) != 0 || !pair[1])
            break;
        frames[i] = pair[1];
        n = i + 1;
        if (pair[0] <= bp)
            break;
        bp = pair[0];
    }
    return n;
}

/* At a function's entry: the probed pc (unless from_caller: the stack then starts at the
 * caller, as if the probed function were not on it), the caller's return address at [RSP],
 * then the frame-pointer chain. from_caller is a constant at every call. */
static __always_inline u32 walk_entry(struct pt_regs *ctx, u64 *frames, const int from_caller) {
    u32 n = 0;
    if (!from_caller)
        frames[n++] = PT_REGS_IP(ctx);
    u64 ret = 0;
    if (bpf_probe_read_user(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx)) != 0 || !ret)
        return n;
    frames[n] = ret;
    return walk_fp(ctx->bp, frames, from_caller ? 1 : 2);
}

/* A descheduled goroutine's stack, from its saved context (g.sched: pc and frame pointer,
 * saved by mcall before the scheduler runs on g0). */
static __always_inline u32 walk_sched(struct go_proc *p, u64 g, u64 *frames) {
    u64 pc = 0, bp = 0;
    if (bpf_probe_read_user(&pc, sizeof(pc), (void *)(g + p->sched_pc_offset)) != 0 || !pc)
        return 0;
    bpf_probe_read_user(&bp, sizeof(bp), (void *)(g + p->sched_bp_offset));
    frames[0] = pc;
    return walk_fp(bp, frames, 1);
}

/* The `go` statement's stack at a runqput called by newproc.func1 (on the system stack):
 * systemstack switches SP to g0 but keeps the frame-pointer chain, so newproc.func1's frame
 * record (a return into systemstack, skipped) links to the goroutine's stack: a record whose
 * return address lies in newproc (skipped too: newproc's entry site is the leaf), then the
 * go statement's caller and the rest. What an entry probe on newproc would walk, without
 * its trap. */
static __always_inline u32 walk_create(struct pt_regs *ctx, struct go_proc *p, u64 *frames) {
    u64 pair[2] = {};
    frames[0] = p->newproc_pc;
    if (!ctx->bp || bpf_probe_read_user(pair, sizeof(pair), (void *)ctx->bp) != 0)
        return 1;
    u64 bp = pair[0];
    if (!bp || bpf_probe_read_user(pair, sizeof(pair), (void *)bp) != 0)
        return 1;
    if (pair[1] >= p->newproc_lo && pair[1] < p->newproc_hi)
        bp = pair[0];
    return walk_fp(bp, frames, 1);
}

static __always_inline struct go_event *scratch_event(u32 kind, u32 tgid, u64 id) {
    u32 zero = 0;
    struct go_event *e = ev_scratch.lookup(&zero);
    if (!e)
        return 0;
    e->time_ns = bpf_ktime_get_boot_ns();
    e->value = 1;
    e->goid = 0;
    e->kind = kind;
    e->flags = 0;
    e->pid = tgid;
    e->tid = (u32)id;
    e->cpu = bpf_get_smp_processor_id();
    e->nframes = 0;
    e->weight_threshold = SAMPLE_UNSAMPLED;
    e->aux = 0;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    return e;
}

/* Adaptive sampling of the frequent records (scheduling, channel waits): the first
 * MAX_PER_SLOT of a CPU's 100 ms slot are kept, the n-th after them with probability
 * MAX_PER_SLOT / n, decided before the draw, so user space scaling by 2^32 / threshold keeps
 * totals unbiased (Horvitz-Thompson) while a storm costs user space a bounded number of
 * records (about MAX_PER_SLOT * (1 + ln(n / MAX_PER_SLOT)) per slot). 0: not recorded. */
static __always_inline u32 rate_threshold(u32 which, u64 now) {
    u32 zero = 0;
    struct rate_slot *r = rate.lookup(&zero);
    if (!r)
        return SAMPLE_UNSAMPLED;
    if (now - r->start_ns >= RATE_SLOT_NS) {
        r->start_ns = now;
        r->n[0] = r->n[1] = 0;
    }
    u32 n = ++r->n[which & 1];
    if (n <= MAX_PER_SLOT)
        return SAMPLE_UNSAMPLED;
    u32 threshold = (u32)(((u64)MAX_PER_SLOT << 32) / n);
    if (bpf_get_prandom_u32() >= threshold) {
        go_count(C_GO_RATE_LIMITED);
        return 0;
    }
    return threshold;
}

static __always_inline void send(struct go_event *e) {
    u32 size = GO_EVENT_HEADER + (e->nframes & (GO_MAX_FRAMES - 1)) * 8;
    if (events.ringbuf_output(e, size, periodic_wake()) != 0) {
        count(C_RINGBUF_FULL);
        return;
    }
    count(C_EVENTS);
}

/* runtime.gopark: the current goroutine (R14) parks; remember when, and its caller (a
 * channel wait if that is chanrecv, chansend or selectgo). A channel operation calls gopark
 * with the channel's lock held (chanparkcommit releases it after the switch to g0), so this
 * does the least it can: the stack is walked when the goroutine is readied (walk_parked). */
int on_gopark(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct go_proc *p = go_procs.lookup(&tgid);
    if (!p)
        return 0;
    u64 goid = goid_of(p, ctx->r14);
    u32 zero = 0;
    struct go_gstate *s = g_scratch.lookup(&zero);
    if (!goid || !s)
        return 0;
    u64 caller = 0;
    bpf_probe_read_user(&caller, sizeof(caller), (void *)PT_REGS_SP(ctx));
    s->park_ns = bpf_ktime_get_boot_ns();
    s->runnable_ns = 0;
    s->flags = 0;
    s->nframes = 0;
    s->frames[0] = caller;
#pragma unroll
    for (int i = 0; i < GO_CHAN_RANGES; i++) {
        if (caller >= p->chan_lo[i] && caller < p->chan_hi[i])
            s->flags = G_PARKED_CHAN;
    }
    struct go_gkey k = {.tgid = tgid, .goid = goid};
    gstate.update(&k, s);
    return 0;
}

/* A parked goroutine's stack, at its wake-up: mcall saved where gopark switched to g0
 * (g.sched.pc, in gopark) and the frame pointer of gopark's caller (g.sched.bp: mcall stores
 * the dereferenced BP, so gopark's own frame record, which holds the return into the caller,
 * is not on the chain). frames[0] must hold the caller gopark recorded; a chain that does
 * start at gopark's record is skipped past it, so the caller is never there twice. */
static __always_inline u32 walk_parked(struct go_proc *p, u64 g, u64 *frames) {
    u64 caller = frames[0], pc = 0, bp = 0;
    if (bpf_probe_read_user(&pc, sizeof(pc), (void *)(g + p->sched_pc_offset)) != 0 || !pc)
        return 0;
    bpf_probe_read_user(&bp, sizeof(bp), (void *)(g + p->sched_bp_offset));
    frames[0] = pc;
    frames[1] = caller;
    if (!caller)
        return 1;
    u64 pair[2] = {};
    if (bp && bpf_probe_read_user(pair, sizeof(pair), (void *)bp) == 0 && pair[1] == caller)
        bp = pair[0];
    return walk_fp(bp, frames, 2);
}

/* runtime.runqput(pp, gp, next): gp goes on a run queue. Created (called by newproc.func1,
 * the `go` statement's closure on the system stack), readied (ready() of a parked
 * goroutine), or already runnable and only moved. RBX is gp. */
int on_runqput(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct go_proc *p = go_procs.lookup(&tgid);
    if (!p)
        return 0;
    u64 goid = goid_of(p, ctx->bx);
    if (!goid)
        return 0;
    struct go_gkey k = {.tgid = tgid, .goid = goid};
    u64 now = bpf_ktime_get_boot_ns();
    u64 caller = 0;
    bpf_probe_read_user(&caller, sizeof(caller), (void *)PT_REGS_SP(ctx));
    if (caller >= p->create_lo && caller < p->create_hi) {
        struct go_event *c = scratch_event(GO_EV_CREATE, tgid, id);
        if (!c)
            return 0;
        c->goid = goid;
        c->value = ctx->bx; /* the g: user space reads whether it still lives */
        c->nframes = walk_create(ctx, p, c->frames);
        if (WANT_CREATE)
            send(c);
        u32 zero = 0;
        struct go_gstate *n = g_scratch.lookup(&zero);
        if (n) {
            n->park_ns = 0;
            n->runnable_ns = now;
            n->flags = G_RUNNABLE;
            n->nframes = c->nframes;
            __builtin_memcpy(n->frames, c->frames, sizeof(n->frames));
            gstate.update(&k, n);
        }
        return 0;
    }
    struct go_gstate *s = gstate.lookup(&k);
    if (!s) {
        go_count(C_GO_STATE_MISSING);
        return 0;
    }
    if (s->flags & G_RUNNABLE)
        return 0; /* moved between run queues: still runnable since runnable_ns */
    s->nframes = walk_parked(p, ctx->bx, s->frames); /* where it parked, for both records */
    u32 threshold = (s->flags & G_PARKED_CHAN) ? rate_threshold(1, now) : 0;
    if (threshold) {
        struct go_event *e = scratch_event(GO_EV_CHAN, tgid, id);
        if (e) {
            e->weight_threshold = threshold;
            e->value = now - s->park_ns;
            e->goid = k.goid;
            e->nframes = s->nframes;
            __builtin_memcpy(e->frames, s->frames, sizeof(e->frames));
            send(e);
        }
    }
    s->runnable_ns = now;
    s->flags = G_RUNNABLE;
    return 0;
}

/* runtime.goschedImpl(gp, ...): a preempted or yielding goroutine goes back to the global
 * run queue (globrunqput, inlined); it is runnable from now, at the stack it stopped in. */
int on_gosched(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct go_proc *p = go_procs.lookup(&tgid);
    if (!p)
        return 0;
    u64 g = ctx->ax;
    u64 goid = goid_of(p, g);
    u32 zero = 0;
    struct go_gstate *s = g_scratch.lookup(&zero);
    if (!goid || !s)
        return 0;
    s->nframes = walk_sched(p, g, s->frames);
    s->park_ns = 0;
    s->runnable_ns = bpf_ktime_get_boot_ns();
    s->flags = G_RUNNABLE;
    struct go_gkey k = {.tgid = tgid, .goid = goid};
    gstate.update(&k, s);
    return 0;
}

/* runtime.execute(gp, ...): the scheduler runs gp; it was runnable since runnable_ns. */
int on_execute(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct go_proc *p = go_procs.lookup(&tgid);
    if (!p)
        return 0;
    struct go_gkey k = {.tgid = tgid, .goid = goid_of(p, ctx->ax)};
    struct go_gstate *s = gstate.lookup(&k);
    if (!s || !(s->flags & G_RUNNABLE)) {
        go_count(C_GO_SCHED_UNTRACKED);
        return 0;
    }
    u32 threshold = rate_threshold(0, bpf_ktime_get_boot_ns());
    struct go_event *e = threshold ? scratch_event(GO_EV_SCHED, tgid, id) : 0;
    if (e) {
        e->weight_threshold = threshold;
        e->value = e->time_ns - s->runnable_ns;
        e->goid = k.goid;
        e->nframes = s->nframes;
        __builtin_memcpy(e->frames, s->frames, sizeof(e->frames));
        send(e);
    }
    gstate.delete(&k);
    return 0;
}

/* runtime.gcStart(trigger): on the goroutine that starts the cycle (it may not start one). */
int on_gcstart(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!go_proc_of(tgid))
        return 0;
    struct go_event *e = scratch_event(GO_EV_GC, tgid, id);
    if (!e)
        return 0;
    e->nframes = walk_entry(ctx, e->frames, 0);
    gc_stack.update(&tgid, e);
    return 0;
}

/* runtime.stopTheWorldWithSema(reason): stwGCMarkTerm (1) and stwGCSweepTerm (2) are GC's
 * (the same values in Go 1.21 to 1.27). */
int on_stw(struct pt_regs *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!go_procs.lookup(&tgid))
        return 0;
    u8 reason = (u8)ctx->ax;
    if (reason != 1 && reason != 2)
        return 0;
    u64 now = bpf_ktime_get_boot_ns();
    stw_start.update(&tgid, &now);
    return 0;
}

/* A RET of runtime.startTheWorldWithSema: the world runs again. */
int on_stw_end(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u64 *start = stw_start.lookup(&tgid);
    if (!start)
        return 0; /* not a GC pause */
    u64 pause = bpf_ktime_get_boot_ns() - *start;
    stw_start.delete(&tgid);
    struct go_event *e = gc_stack.lookup(&tgid);
    if (!e) {
        go_count(C_GO_STW_UNPAIRED);
        e = scratch_event(GO_EV_GC, tgid, id);
        if (!e)
            return 0;
    }
    e->value = pause;
    e->time_ns = bpf_ktime_get_boot_ns();
    send(e);
    return 0;
}

/* runtime.mallocgc(size, typ, needzero) and the size-specialised entry points of Go 1.26+
 * (same first argument). Recorded with probability min(1, size / ALLOC_RATE). */
int on_malloc(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    go_count(C_GO_ALLOC_SEEN);
    u64 size = ctx->ax;
    u32 threshold = SAMPLE_UNSAMPLED;
    if (size < ALLOC_RATE) {
        threshold = (u32)((size << 32) / ALLOC_RATE);
        if (bpf_get_prandom_u32() >= threshold)
            return 0;
    }
    if (!go_proc_of(tgid))
        return 0;
    struct go_event *e = scratch_event(GO_EV_ALLOC, tgid, id);
    if (!e)
        return 0;
    e->value = size;
    e->weight_threshold = threshold;
    e->nframes = walk_entry(ctx, e->frames, 0);
    send(e);
    return 0;
}

/* runtime.profilealloc(mp, x, size): the runtime's heap profiler sampled this allocation
 * (on average one per MemProfileRate bytes, a Poisson process in bytes): one trap per sample
 * instead of one per allocation. The rate is read at each hit (a program may change it);
 * user space scales by 1 / (1 - exp(-size / rate)) as runtime/pprof does. The stack starts
 * at profilealloc's caller (mallocgc or a size-specialised entry point), as with on_malloc. */
int on_profilealloc(struct pt_regs *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct go_proc *p = go_proc_of(tgid);
    if (!p)
        return 0;
    go_count(C_GO_ALLOC_SEEN);
    struct go_event *e = scratch_event(GO_EV_ALLOC_SAMPLED, tgid, id);
    if (!e)
        return 0;
    e->value = ctx->cx;
    u64 rate = 0;
    if (p->mem_profile_rate)
        bpf_probe_read_user(&rate, sizeof(rate), (void *)p->mem_profile_rate);
    e->aux = rate > 0xffffffffull ? 0xffffffffu : (u32)rate;
    e->nframes = walk_entry(ctx, e->frames, 1);
    send(e);
    return 0;
}

/* sched:sched_process_exit / exec: a traced process is gone (its uprobes went with its
 * memory); with WATCH_EXEC every exec is reported, so user space can trace new processes of
 * the configured binary. */
#ifndef WATCH_EXEC
#define WATCH_EXEC 0
#endif
static __always_inline void proc_event(u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (kind == GO_EV_PROC_EXIT && tgid != (u32)id)
        return; /* a thread, not the process */
    if (go_procs.lookup(&tgid))
        go_procs.delete(&tgid);
    else if (!(WATCH_EXEC && kind == GO_EV_PROC_EXEC))
        return;
    struct go_event *e = events.ringbuf_reserve(GO_EVENT_HEADER);
    if (!e) {
        count(C_RINGBUF_FULL);
        return;
    }
    __builtin_memset(e, 0, GO_EVENT_HEADER);
    e->time_ns = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->pid = tgid;
    e->tid = (u32)id;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

int on_exit(void *ctx) {
    proc_event(GO_EV_PROC_EXIT);
    return 0;
}

int on_exec(void *ctx) {
    proc_event(GO_EV_PROC_EXEC);
    return 0;
}
