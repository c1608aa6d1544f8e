/* Ground truth for unwinding without frame pointers (build: gcc -O2 -g, no frame pointers).
 * caller_a, caller_b and caller_c all spin in the same leaf, hot(); they get 50/30/20 % of this
 * thread's CPU time by CPU-time deadlines (CLOCK_THREAD_CPUTIME_ID), not by loop counts, and the
 * time each really got is printed: a_ns=.. b_ns=.. c_ns=.. when done.
 * Usage: unwind_callers SECONDS. Prints "ready" once its mappings are final, then waits for a
 * line on stdin, so a profiler can load its tables before it starts. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noipa)) void hot(unsigned long n) {
    for (unsigned long i = 0; i < n; i++)
        sink += i;
}

static long long cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Each caller spins until this thread has used `slice_ns` more CPU; the clock is read once per
 * 64 calls of hot() (~0.2 ms) so that time in clock_gettime stays well under 1 %. */
#define SPIN(name)                                                                           \
    __attribute__((noipa)) long long name(long long slice_ns) {                              \
        long long start = cpu_ns(), now = start;                                             \
        while (now - start < slice_ns) {                                                     \
            for (int k = 0; k < 64; k++)                                                     \
                hot(2000);                                                                   \
            now = cpu_ns();                                                                  \
        }                                                                                    \
        return now - start;                                                                  \
    }
SPIN(caller_a)
SPIN(caller_b)
SPIN(caller_c)

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    char line[16];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    long long total = (long long)(seconds * 1e9), used[3] = {0, 0, 0};
    unsigned int state = 12345;
    /* Random order (not a fixed cycle) so a fixed-rate sampler cannot alias with it. */
    while (used[0] + used[1] + used[2] < total) {
        state = state * 1103515245u + 12345u;
        unsigned int r = (state >> 16) % 10;
        if (r < 5)
            used[0] += caller_a(2000000);
        else if (r < 8)
            used[1] += caller_b(2000000);
        else
            used[2] += caller_c(2000000);
    }
    printf("a_ns=%lld b_ns=%lld c_ns=%lld\n", used[0], used[1], used[2]);
    return 0;
}
