/* A tiny program the collector.bpf tests load through the real loader: every exec sends
 * {MAGIC, tgid} to a ringbuf and counts into a per-CPU array; "scratch" is for map tests. */
/* Standalone: it declares its own maps rather than those of common.h. */

#ifndef MAGIC
#define MAGIC 0
#endif

struct selftest_event {
    u64 magic;
    u32 pid;
    u32 pad;
};

BPF_RINGBUF_OUTPUT(events, 1);
BPF_PERCPU_ARRAY(execs, u64, 1);
BPF_HASH(scratch, u32, u64, 64);
BPF_STACK_TRACE(stacks, 128);

int on_exec(void *ctx) {
    u32 zero = 0;
    u64 *n = execs.lookup(&zero);
    if (n)
        (*n)++;
    struct selftest_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e)
        return 0;
    e->magic = MAGIC;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->pad = stacks.get_stackid(ctx, 0);
    events.ringbuf_submit(e, 0);
    return 0;
}
