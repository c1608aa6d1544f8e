/* User-space stack unwinding from call-frame tables (.eh_frame rows built by collector.unwind),
 * with a frame-pointer fallback for code that has no table.
 *
 * Layout shared with collector/unwind/layout.py (keep both in step):
 *   unwind_rows  array of struct unwind_row; each binary's table is one contiguous, sorted
 *                slice [row_first, row_first + row_count) allocated by user space.
 *   unwind_procs hash tgid -> struct unwind_proc: that process's executable mappings sorted by
 *                start, each naming its binary's slice (row_count 0: no table, use rbp).
 *   unwind_stats per-CPU counters, one per enum unwind_reason (why walks ended).
 *
 * Why bounded loops and not bpf_loop: bcc 0.26 emits the callback address of bpf_loop as a
 * plain 0 (no BPF_PSEUDO_FUNC relocation), so the verifier rejects it ("R2 type=scalar
 * expected=func"). Loops with constant bounds are verified iteration by iteration instead;
 * UNWIND_MAX_FRAMES x (mapping search + row search) stays far below the 1M-insn budget.
 *
 * Defines (optional): UNWIND_ROWS, UNWIND_PROCS, UNWIND_MAX_FRAMES (power of two minus one is
 * not needed: any value up to 127), UNWIND_MAX_MAPPINGS (power of two).
 */
#ifndef COLLECTOR_UNWIND_H
#define COLLECTOR_UNWIND_H

#include <uapi/linux/ptrace.h>

#include "pidns.h"

#ifndef UNWIND_ROWS
#define UNWIND_ROWS (1 << 21)
#endif
#ifndef UNWIND_PROCS
#define UNWIND_PROCS 1024
#endif
#ifndef UNWIND_MAX_FRAMES
#define UNWIND_MAX_FRAMES 96
#endif
#ifndef UNWIND_MAX_MAPPINGS
#define UNWIND_MAX_MAPPINGS 64
#endif
#define UNWIND_ROW_SEARCH_STEPS 22 /* strides 2^21 .. 1: tables of up to 4M rows */

/* unwind_row.kind: bits 0-1 how the CFA is found, bits 2-3 where the caller's rbp is, bits 4-7
 * for UNWIND_CFA_STOP rows why the walk cannot continue (enum unwind_reason). */
#define UNWIND_CFA_STOP 0
#define UNWIND_CFA_RSP 1
#define UNWIND_CFA_RBP 2
#define UNWIND_RBP_SAME 0   /* rbp unchanged in this frame */
#define UNWIND_RBP_SAVED 1  /* caller's rbp at CFA - rbp_off * 8 */
#define UNWIND_RBP_UNKNOWN 2

/* Why a walk ended; also the index in unwind_stats. */
enum unwind_reason {
    UNWIND_END = 0,         /* outermost frame reached (RA undefined or 0): a whole stack */
    UNWIND_NO_PROCESS = 1,  /* no mappings loaded for this tgid: frame pointers only */
    UNWIND_NO_MAPPING = 2,  /* pc outside every known executable mapping */
    UNWIND_NO_ROW = 3,      /* pc in a table's gap (no function covers it) */
    UNWIND_TABLE_STOP = 4,  /* a row the table cannot express (DWARF expression, other reg) */
    UNWIND_PLT = 5,         /* pc in a PLT stub */
    UNWIND_SIGNAL = 6,      /* RA not at CFA-8 (signal trampoline, hand-written asm) */
    UNWIND_BAD_CFA = 7,     /* CFA not above rsp, or rbp-based with rbp unknown */
    UNWIND_READ_FAULT = 8,  /* reading RA or rbp from the user stack failed */
    UNWIND_DEPTH = 9,       /* UNWIND_MAX_FRAMES reached */
    UNWIND_FP_END = 10,     /* frame-pointer fallback ended (rbp 0 or chain broken) */
    UNWIND_NO_REGS = 11,    /* no user registers (kernel thread) */
    UNWIND_REASONS = 12,
};

struct unwind_row {
    u32 pc;      /* link-time vaddr minus the table's base */
    u16 cfa_off; /* CFA = (rsp or rbp) + cfa_off * 8 */
    u8 rbp_off;  /* UNWIND_RBP_SAVED: caller's rbp at CFA - rbp_off * 8 */
    u8 kind;
};

struct unwind_mapping {
    u64 start;
    u64 end;
    u64 bias; /* address - bias = row pc (link-time vaddr - table base) */
    u32 row_first;
    u32 row_count; /* 0: no table for this mapping: frame pointers */
};

/* A process's mappings live in unwind_mappings[slot * UNWIND_MAX_MAPPINGS ...][count], sorted
 * by start. They are looked up by key rather than indexed through one big per-process value:
 * a variable offset into a map value makes the verifier track the search index precisely and
 * explore every path of every binary search (measured: 139k insns for one frame, over 1M for
 * two); keys on the stack stay imprecise, so paths merge at each loop head. */
struct unwind_proc {
    u32 slot;
    u32 count;
    u32 missed; /* a walk left every mapping since user space wrote this entry */
    u32 pad;
};

struct unwind_regs {
    u64 ip;
    u64 sp;
    u64 bp;
};

BPF_F_TABLE("array", u32, struct unwind_row, unwind_rows, UNWIND_ROWS, BPF_F_MMAPABLE);
BPF_HASH(unwind_procs, u32, struct unwind_proc, UNWIND_PROCS);
BPF_F_TABLE("array", u32, struct unwind_mapping, unwind_mappings, UNWIND_PROCS * UNWIND_MAX_MAPPINGS,
            BPF_F_MMAPABLE);
BPF_PERCPU_ARRAY(unwind_stats, u64, UNWIND_REASONS);

static __always_inline void unwind_count(u32 reason) {
    u64 *v = unwind_stats.lookup(&reason);
    if (v)
        (*v)++;
}

/* At exec: the walker forgets the old image's mappings at once, in the exec itself (user space
 * heard of it only at its next drain: the new image's first waits were walked with the old
 * image's mappings meanwhile and ended no_mapping). It walks with frame pointers, no_process,
 * until user space loads the new image; user space still frees the old slot. */
static __always_inline void unwind_forget_current(void) {
    u64 id;
    if (!pidns_pid_tgid(&id))
        return;
    u32 tgid = id >> 32;
    unwind_procs.delete(&tgid);
}

/* At the exit of a thread-group leader, likewise: the exit event does not wake user space (it
 * is read at the next drain, up to drain_interval later), and a new process given the same pid
 * meanwhile must not be walked with this one's mappings. User space still frees the slot. */
static __always_inline void unwind_forget_exited(void) {
    u64 id;
    if (!pidns_pid_tgid(&id) || (u32)(id >> 32) != (u32)id)
        return;
    u32 tgid = id >> 32;
    unwind_procs.delete(&tgid);
}

/* For a walk that ended UNWIND_NO_MAPPING: wake user space at once the first time since it
 * (re)loaded the process, so a library mapped since (dlopen; or ld.so still mapping at the first
 * sample) is reloaded within milliseconds, not at the next drain. User space clears the flag
 * by writing the entry again; later misses do not wake it (a garbage return address). */
static __always_inline u64 unwind_miss_wake(u32 tgid, u64 wake) {
    struct unwind_proc *p = unwind_procs.lookup(&tgid);
    if (!p || p->missed)
        return wake;
    p->missed = 1;
    return BPF_RB_FORCE_WAKEUP;
}

/* The interrupted task's user registers: the perf sample's own when it hit user code, else the
 * pt_regs saved at kernel entry (what sched_switch programs need too). 0 when there are none. */
static __always_inline int unwind_regs_from(struct pt_regs *sample, struct unwind_regs *r) {
    if (sample && (s64)PT_REGS_IP(sample) >= 0) {
        r->ip = PT_REGS_IP(sample);
        r->sp = PT_REGS_SP(sample);
        r->bp = PT_REGS_FP(sample);
    } else {
        struct task_struct *task = bpf_get_current_task_btf();
        struct pt_regs *user = (struct pt_regs *)bpf_task_pt_regs(task);
        struct pt_regs copy = {};
        if (!user || bpf_probe_read_kernel(&copy, sizeof(copy), user) != 0)
            return 0;
        r->ip = PT_REGS_IP(&copy);
        r->sp = PT_REGS_SP(&copy);
        r->bp = PT_REGS_FP(&copy);
    }
    /* Kernel threads (and a task past exit_mm) have no user state: ip 0 or a kernel address. */
    return r->ip != 0 && (s64)r->ip > 0 && r->sp != 0;
}

/* A fresh load of a map value field: the verifier forgets what earlier branches taught it about
 * the value, so it cannot decide later tests from ranges and mark the search index precise. */
#define UNWIND_FRESH(field) (*(volatile typeof(field) *)&(field))

static __always_inline struct unwind_mapping *unwind_find_mapping(struct unwind_proc *p, u64 pc) {
    u32 base = p->slot * UNWIND_MAX_MAPPINGS;
    struct unwind_mapping *m = unwind_mappings.lookup(&base);
    if (!m || p->count == 0 || m->start > pc)
        return 0;
    /* Last mapping with start <= pc, by descending power-of-two strides (see unwind_find_row). */
    u32 pos = 0;
#pragma clang loop unroll(disable)
    for (u32 step = UNWIND_MAX_MAPPINGS / 2; step > 0; step /= 2) {
        u32 probe = pos + step;
        if (probe >= UNWIND_FRESH(p->count))
            continue;
        u32 idx = base + probe;
        struct unwind_mapping *c = unwind_mappings.lookup(&idx);
        if (c && c->start <= pc)
            pos = probe;
    }
    u32 idx = base + pos;
    m = unwind_mappings.lookup(&idx);
    return m && pc < m->end ? m : 0;
}

/* The row in effect at table pc `x`: the last row whose pc <= x, or 0 before the first.
 *
 * Descending power-of-two strides rather than lo/hi halving: with lo/hi the verifier can decide
 * `lo >= hi` from the ranges it tracks, which marks both precise and stops it from merging the
 * search's paths (measured: 72k insns per frame). Here the only tests are against values read
 * from maps, so `pos` stays imprecise and paths merge at every loop head. */
static __always_inline struct unwind_row *unwind_find_row(struct unwind_mapping *m, u32 x) {
    u32 first = m->row_first;
    struct unwind_row *r = unwind_rows.lookup(&first);
    if (!r || r->pc > x)
        return 0;
    u32 pos = 0;
#pragma clang loop unroll(disable)
    for (u32 step = 1u << (UNWIND_ROW_SEARCH_STEPS - 1); step > 0; step /= 2) {
        u32 probe = pos + step;
        if (probe >= UNWIND_FRESH(m->row_count))
            continue;
        u32 idx = first + probe;
        struct unwind_row *c = unwind_rows.lookup(&idx);
        if (c && c->pc <= x)
            pos = probe;
    }
    u32 idx = first + pos;
    return unwind_rows.lookup(&idx);
}

/* One frame-pointer step: the fallback where a mapping has no table. */
static __always_inline int unwind_fp_step(struct unwind_regs *r) {
    u64 frame[2]; /* saved rbp, return address */
    if (r->bp == 0 || r->bp < r->sp || (r->bp & 7))
        return UNWIND_FP_END;
    if (bpf_probe_read_user(frame, sizeof(frame), (void *)r->bp) != 0)
        return UNWIND_FP_END;
    r->sp = r->bp + 16;
    r->bp = frame[0];
    r->ip = frame[1];
    return -1;
}

/* A copy of the user stack for user space to unwind later (UNWIND_STACK_COPY bytes at most,
 * 0: off), taken instead of the walk when the process's mappings are not loaded yet (the walker
 * would have frame pointers only: no_process; a short process is often sampled only then). User space
 * unwinds the copy with the same tables once the process is loaded (collector/unwind/walk.py),
 * as perf's --call-graph dwarf does with its copies. Read page by page from rsp up, so a copy
 * near the top of the stack stops at its end (a read across into an unmapped page would fail
 * whole); `bytes` has a page of slack so the verifier can bound each read. */
#ifndef UNWIND_STACK_COPY
#define UNWIND_STACK_COPY 0
#endif
#if UNWIND_STACK_COPY
#if UNWIND_STACK_COPY & (UNWIND_STACK_COPY - 1)
#error "UNWIND_STACK_COPY must be a power of two"
#endif
#define UNWIND_COPY_PAGES (UNWIND_STACK_COPY / 4096 + 1)
#ifndef UNWIND_COPY_GAP_NS
#define UNWIND_COPY_GAP_NS 10000000 /* per CPU, between copies of samples that are not a pid's first */
#endif
struct unwind_copy {
    u64 ip;
    u64 sp;
    u64 bp;
    u32 len; /* bytes copied from sp */
    u32 pad;
    u8 bytes[UNWIND_STACK_COPY + 4096];
};
BPF_PERCPU_ARRAY(unwind_copy_at, u64, 1);

/* Bytes of copies in flight, one mmapable element: `sent` counted here before each record goes
 * out (and taken back if it could not), `read` stored by the reader after each drain, `pause`
 * 1 while user space holds as many copies as it will keep (collector/bpf/held_copies.py), and
 * `bounded` the copies not taken for either reason. bcc 0.26 cannot call bpf_ringbuf_query on
 * its ring, so the copies' share of the ring is counted instead: at most
 * UNWIND_COPY_RING_BYTES of it, the rest stays for the samples the ring was sized for.
 * Verification is near its 1M budget here: one lookup and one test (pause shifted into the
 * sum) with the counter in the element took 875k instructions; three lookups 978k, and a
 * separate counters.lookup for `bounded` over 1M. */
#ifndef UNWIND_COPY_RING_BYTES
#define UNWIND_COPY_RING_BYTES (RINGBUF_PAGES * 4096 / 4)
#endif
#if UNWIND_COPY_RING_BYTES > UNWIND_STACK_COPY + 4096
#define UNWIND_COPY_ROOM (UNWIND_COPY_RING_BYTES - UNWIND_STACK_COPY - 4096)
#else
#define UNWIND_COPY_ROOM 0 /* a small ring: one copy in flight at a time */
#endif
struct unwind_copy_flow {
    u64 sent;
    u64 read;
    u64 pause;
    u64 bounded;
};
BPF_F_TABLE("array", u32, struct unwind_copy_flow, unwind_copy_flow, 1, BPF_F_MMAPABLE);

static __always_inline struct unwind_copy_flow *unwind_copy_room(void) {
    u32 zero = 0;
    struct unwind_copy_flow *f = unwind_copy_flow.lookup(&zero);
    if (!f)
        return 0;
    u64 used = f->sent - f->read + (f->pause << 40);
    if (used > UNWIND_COPY_ROOM) {
        __sync_fetch_and_add(&f->bounded, 1);
        return 0;
    }
    return f;
}

/* Add `bytes` (a record's size, or minus it when the record was not sent) to the copies sent. */
static __always_inline void unwind_copy_sent(u64 bytes) {
    u32 zero = 0;
    struct unwind_copy_flow *f = unwind_copy_flow.lookup(&zero);
    if (f)
        __sync_fetch_and_add(&f->sent, bytes);
}

/* Whether to copy now: always for a process's first sample (it wakes user space anyway), else
 * at most one copy per UNWIND_COPY_GAP_NS on this CPU, so a host of processes waiting for their
 * tables does not fill the ring buffer with copies; never past the copies' share of the ring
 * or while user space holds all it will. */
static __always_inline int unwind_copy_due(int first) {
    u32 zero = 0;
    u64 *at = unwind_copy_at.lookup(&zero);
    if (!at)
        return 0;
    u64 now = bpf_ktime_get_ns();
    if (!first && now - *at < UNWIND_COPY_GAP_NS)
        return 0;
    if (!unwind_copy_room())
        return 0;
    *at = now;
    return 1;
}

static __always_inline void unwind_copy_stack(const struct unwind_regs *r, struct unwind_copy *c) {
    c->ip = r->ip;
    c->sp = r->sp;
    c->bp = r->bp;
    u32 got = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < UNWIND_COPY_PAGES; i++) {
        u32 want = 4096 - (u32)((r->sp + got) & 4095);
        if (got + want > UNWIND_STACK_COPY)
            want = UNWIND_STACK_COPY - got;
        if (want == 0)
            break;
        /* Opaque to clang: the two tests stay apart, so the verifier sees want <= 4096 (one
         * merged range test bounded only a copy of it). */
        u64 size = want;
        asm volatile("" : "+r"(size));
        if (size > 4096)
            break;
        if (bpf_probe_read_user(&c->bytes[got & (UNWIND_STACK_COPY - 1)], size,
                                (void *)(r->sp + got)) != 0)
            break;
        got += want;
    }
    c->len = got;
}
#endif

/* Walk the user stack from `regs` into out[0..max_frames), leaf first. Returns the number of
 * frames; *reason says why the walk ended (UNWIND_END: the outermost frame was reached) and is
 * counted in unwind_stats. `out` must point into a map value with room for max_frames u64. */
static __always_inline u32 unwind_user(const struct unwind_regs *regs, u64 *out, u32 max_frames,
                                       u32 *reason) {
    struct unwind_regs r = *regs;
    u64 id;
    pidns_pid_tgid(&id); /* unwind_procs is keyed by the pids user space reads /proc with */
    u32 tgid = id >> 32;
    struct unwind_proc *proc = unwind_procs.lookup(&tgid);
    u32 n = 0;
    int why = UNWIND_DEPTH;
    int bp_known = 1;
    if (max_frames > UNWIND_MAX_FRAMES)
        max_frames = UNWIND_MAX_FRAMES;
#pragma clang loop unroll(disable)
    for (int i = 0; i < UNWIND_MAX_FRAMES; i++) {
        if (n >= max_frames) {
            why = UNWIND_DEPTH;
            break;
        }
        out[n & 127] = r.ip;
        n++;
        if (!proc) {
            int s = unwind_fp_step(&r);
            if (s >= 0) {
                why = UNWIND_NO_PROCESS;
                break;
            }
            continue;
        }
        /* A return address may point just past a call at the end of its function. */
        u64 pc = i == 0 ? r.ip : r.ip - 1;
        struct unwind_mapping *m = unwind_find_mapping(proc, pc);
        if (!m) {
            why = UNWIND_NO_MAPPING;
            break;
        }
        if (m->row_count == 0) {
            int s = unwind_fp_step(&r);
            if (s >= 0) {
                why = s;
                break;
            }
            continue;
        }
        struct unwind_row *row = unwind_find_row(m, (u32)(pc - m->bias));
        if (!row) {
            why = UNWIND_NO_ROW;
            break;
        }
        u8 kind = row->kind;
        u8 cfa_rule = kind & 3;
        if (cfa_rule == UNWIND_CFA_STOP) {
            why = kind >> 4;
            break;
        }
        u64 cfa;
        if (cfa_rule == UNWIND_CFA_RSP) {
            cfa = r.sp + (u64)row->cfa_off * 8;
        } else {
            if (!bp_known) {
                why = UNWIND_BAD_CFA;
                break;
            }
            cfa = r.bp + (u64)row->cfa_off * 8;
        }
        /* The caller's frame is above this one: anything else would loop or read garbage. */
        if (cfa <= r.sp) {
            why = UNWIND_BAD_CFA;
            break;
        }
        u64 ra;
        if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)) != 0) {
            why = UNWIND_READ_FAULT;
            break;
        }
        u8 rbp_rule = (kind >> 2) & 3;
        if (rbp_rule == UNWIND_RBP_SAVED) {
            if (bpf_probe_read_user(&r.bp, sizeof(r.bp), (void *)(cfa - (u64)row->rbp_off * 8))) {
                why = UNWIND_READ_FAULT;
                break;
            }
            bp_known = 1;
        } else if (rbp_rule == UNWIND_RBP_UNKNOWN) {
            bp_known = 0;
        }
        r.sp = cfa;
        r.ip = ra;
        if (ra == 0) {
            why = UNWIND_END;
            break;
        }
    }
    *reason = why;
    unwind_count(why);
    return n;
}

#endif
