/* Structs and constants that BPF programs and the Python readers both use.
 * Keep in sync with receivers/cpu/events.py (struct formats there). */
#ifndef COLLECTOR_COMMON_H
#define COLLECTOR_COMMON_H

#define TASK_COMM_LEN 16

/* event.kind */
#define EVENT_SAMPLE 0
#define EVENT_EXEC 1
#define EVENT_EXIT 2

/* event.flags */
#define EVENT_F_NEW_PID 1 /* first sample of this tgid since load/exec: snapshot it now */
#define EVENT_F_KERNEL_MODE 2 /* the sample interrupted kernel code */

/* 56 bytes, little endian: "<QIIIIIiiI16s" (time_ns, kind, flags, pid, tid, cpu,
 * user_stack_id, kernel_stack_id, value, comm). Stack ids < 0 are -errno from
 * bpf_get_stackid (or -ENOENT when that walk was disabled). */
struct event {
    u64 time_ns; /* bpf_ktime_get_boot_ns() */
    u32 kind;
    u32 flags;
    u32 pid; /* tgid */
    u32 tid;
    u32 cpu;
    s32 user_stack_id;
    s32 kernel_stack_id;
    u32 value;
    char comm[TASK_COMM_LEN];
};

/* Index in the per-CPU "counters" array. */
#define C_USER_STACK_EFAULT 0  /* no user stack: kernel thread or exiting task */
#define C_USER_STACK_EEXIST 1  /* hash collision in the stack map */
#define C_USER_STACK_ENOMEM 2  /* stack map full */
#define C_USER_STACK_OTHER 3
#define C_KERNEL_STACK_EFAULT 4 /* no kernel stack although in kernel mode */
#define C_KERNEL_STACK_EEXIST 5
#define C_KERNEL_STACK_ENOMEM 6
#define C_KERNEL_STACK_OTHER 7
#define C_RINGBUF_FULL 8        /* event lost: bpf_ringbuf_reserve failed */
#define C_SAMPLES 9             /* samples seen (before filters that drop) */
#define C_NUM 10

#endif
