/* What bpf/heap.bpf.c shares with its reader (receivers/heap/events.py).
 *
 * A heap record is the 64-byte struct event of common.h followed by the address it is about
 * (72 bytes, "<QQIIIIIiiI16sQ"), so exec/exit records written by common.h's helpers and heap
 * records share one ring and one decoder:
 *   kind HEAP_ALLOC  a sampled allocation: value = requested bytes, addr = the returned block,
 *                    user_stack_id = the stack at the allocator's return (its caller's frames)
 *   kind HEAP_FREE   a sampled block was freed (or realloc'd away): addr
 *   kind HEAP_FAULT  page_faults mode: a user page fault of a target, value = 1, addr = the
 *                    faulting address
 *   kind HEAP_GROW   page_faults mode: brk/mmap of a target: value = the mmap length, or with
 *                    HEAP_F_BRK the break asked for (user space keeps the previous one)
 * Records with EVENT_F_USER_FRAMES (page_faults with tables) carry their frames after the
 * event instead of an address.
 *   EVENT_EXEC/EXIT  as in common.h; flags HEAP_F_CANDIDATE on an exec whose comm matches the
 *                    `binary` target (user space checks /proc/<pid>/exe). */
#ifndef COLLECTOR_HEAP_H
#define COLLECTOR_HEAP_H

#define HEAP_ALLOC 3
#define HEAP_FREE 4
#define HEAP_FAULT 5
#define HEAP_GROW 6

#define HEAP_F_UNTRACKED 64 /* the outstanding map was full: counted as allocated, not in use */
#define HEAP_F_CANDIDATE 128
#define HEAP_F_BRK 256

struct heap_event {
    struct event e;
    u64 addr;
};

/* Key of the outstanding-allocations map: the process and the block. */
struct alloc_key {
    u32 pid;
    u32 pad;
    u64 addr;
};

#endif
