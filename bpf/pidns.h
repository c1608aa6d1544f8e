/* Pids as the collector sees them, also when it runs inside a PID namespace (a sidecar with
 * shareProcessNamespace, `unshare --pid --mount-proc`).
 *
 * bpf_get_current_pid_tgid() always gives pids of the initial namespace, but a collector in
 * a container reads /proc with the pids of its own namespace: with those host pids it would
 * read nothing, or another process. So programs take pids through pidns_pid_tgid(), which
 * asks the kernel for the current task's ids in the collector's namespace
 * (bpf_get_ns_current_pid_tgid, Linux 5.7+) and says when the task is not visible there.
 *
 * Defines, computed by collector/proc/pidns.py (pidns_defines()):
 *   PIDNS_TRANSLATE  1 when the collector's /proc belongs to a namespace other than the
 *                    initial one; 0 (default): plain bpf_get_current_pid_tgid(), which in the
 *                    initial namespace is already right for every task, containers included.
 *   PIDNS_DEV        the namespace file's device, in the kernel's dev_t encoding
 *                    (major << 20 | minor; stat(2) encodes it differently)
 *   PIDNS_INO        its inode number (the number in "pid:[4026532412]")
 *
 * Limit (of the helper, not of this code): it matches the namespace the task lives in, not
 * its ancestors, so a task in a namespace nested below the collector's (a container inside
 * the sidecar's pod) is reported as outside too: skipped and counted, never mislabelled. */
#ifndef COLLECTOR_PIDNS_H
#define COLLECTOR_PIDNS_H

#ifndef PIDNS_TRANSLATE
#define PIDNS_TRANSLATE 0
#endif
#ifndef PIDNS_DEV
#define PIDNS_DEV 0
#endif
#ifndef PIDNS_INO
#define PIDNS_INO 0
#endif

/* Like bpf_get_current_pid_tgid() (tgid in the upper 32 bits, thread id in the lower), but in
 * the collector's namespace. Returns 1 with *id set, or 0 when the current task cannot be
 * named from that namespace (*id is then 0): the caller skips the event and counts it. */
static __always_inline int pidns_pid_tgid(u64 *id) {
#if PIDNS_TRANSLATE
    struct bpf_pidns_info ns = {};
    if (bpf_get_ns_current_pid_tgid((u64)PIDNS_DEV, (u64)PIDNS_INO, &ns, sizeof(ns)) != 0) {
        *id = 0;
        return 0;
    }
    *id = ((u64)ns.tgid << 32) | ns.pid;
    return 1;
#else
    *id = bpf_get_current_pid_tgid();
    return 1;
#endif
}

#endif
