/* Watches a BPF ringbuf's consumer_pos the way the kernel reads it while a reader drains:
 * maps the consumer page of the inherited map fd read-only and, for SECONDS, spins reading
 * the 8-byte position. A position only ever grows, so a value below the previous one (or 0
 * after a non-zero one) is a torn store the kernel could have seen.
 * Usage: consumer_watch FD SECONDS; prints "changes=N torn=M". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int fd = atoi(argv[1]);
    double end = now() + atof(argv[2]);
    long page = sysconf(_SC_PAGESIZE);
    volatile uint64_t *pos = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
    if (pos == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    uint64_t prev = *pos, changes = 0, torn = 0;
    for (unsigned long i = 0;; i++) {
        uint64_t v = *pos;
        if (v != prev) {
            changes++;
            if (v < prev)
                torn++;
            prev = v;
        }
        if ((i & 0xffff) == 0 && now() > end)
            break;
    }
    printf("changes=%lu torn=%lu\n", (unsigned long)changes, (unsigned long)torn);
    return 0;
}
