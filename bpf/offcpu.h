/* Structs and constants bpf/offcpu.bpf.c and receivers/offcpu/events.py both use. */
#ifndef COLLECTOR_OFFCPU_H
#define COLLECTOR_OFFCPU_H

#define TASK_COMM_LEN 16

/* offcpu_event.kind */
#define OC_EVENT_WAIT 0
#define OC_EVENT_EXEC 1
#define OC_EVENT_EXIT 2

/* offcpu_event.flags */
#define OC_F_NEW_PID 1 /* first event of this tgid since load/exec: snapshot it now */

/* 64 bytes, little endian: "<QQIIIIiiII16s" (time_ns, blocked_ns, kind, flags, pid, tid,
 * user_stack_id, kernel_stack_id, cpu, pad, comm). Stack ids < 0 are -errno from
 * bpf_get_stackid (-ENOENT when that walk is disabled). */
struct offcpu_event {
    u64 time_ns; /* bpf_ktime_get_boot_ns() at the end of the wait (switch-in) */
    u64 blocked_ns;
    u32 kind;
    u32 flags;
    u32 pid; /* tgid */
    u32 tid;
    s32 user_stack_id;
    s32 kernel_stack_id;
    u32 cpu; /* where the thread was switched back in */
    u32 _pad;
    char comm[TASK_COMM_LEN];
};

/* Index in the per-CPU "counters" array. */
#define OC_USER_STACK_EFAULT 0 /* no user stack: kernel thread or exiting task */
#define OC_USER_STACK_EEXIST 1 /* hash collision in the stack map */
#define OC_USER_STACK_ENOMEM 2 /* stack map full */
#define OC_USER_STACK_OTHER 3
#define OC_KERNEL_STACK_EFAULT 4
#define OC_KERNEL_STACK_EEXIST 5
#define OC_KERNEL_STACK_ENOMEM 6
#define OC_KERNEL_STACK_OTHER 7
#define OC_RINGBUF_FULL 8     /* event lost: user space fell behind */
#define OC_STORAGE_FULL 9     /* switch-out not recorded: task storage allocation failed */
#define OC_ABOVE_MAX_BLOCK 10 /* wait longer than MAX_BLOCK_NS: not emitted */
#define OC_EVENTS 11          /* wait events emitted */
#define OC_NUM 12

#endif
