/* Self-test of bpf/pidns.h: on every exec of a program whose comm user space put in "comms",
 * send the pids bpf_get_current_pid_tgid() gives next to those pidns_pid_tgid() gives, so a
 * test can compare both with what /proc and the process itself say.
 * Loaded by collector.proc.pidns_selftest and tests/collector/proc/test_pidns.py. */
#include "pidns.h"

#define TASK_COMM_LEN 16
#define C_MATCHED 0 /* execs of a selected comm */
#define C_OUTSIDE 1 /* ... of which pidns_pid_tgid() said "not in the collector's namespace" */

struct comm_key {
    char comm[TASK_COMM_LEN];
};

/* 24 bytes: "<IIIIII" */
struct pidns_event {
    u32 host_tgid; /* bpf_get_current_pid_tgid(): the initial namespace */
    u32 host_pid;
    u32 ns_tgid; /* pidns_pid_tgid(): the collector's namespace; 0 when outside */
    u32 ns_pid;
    u32 inside; /* pidns_pid_tgid()'s answer */
    u32 pad;
};

BPF_RINGBUF_OUTPUT(events, 1);
BPF_HASH(comms, struct comm_key, u8, 16);
BPF_PERCPU_ARRAY(counters, u64, 2);

static __always_inline void bump(u32 idx) {
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

int on_exec(void *ctx) {
    struct comm_key key = {};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    if (!comms.lookup(&key))
        return 0;
    bump(C_MATCHED);
    u64 host = bpf_get_current_pid_tgid();
    u64 id = 0;
    int inside = pidns_pid_tgid(&id);
    if (!inside)
        bump(C_OUTSIDE);
    struct pidns_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e)
        return 0;
    e->host_tgid = host >> 32;
    e->host_pid = (u32)host;
    e->ns_tgid = id >> 32;
    e->ns_pid = (u32)id;
    e->inside = inside;
    e->pad = 0;
    events.ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
    return 0;
}
