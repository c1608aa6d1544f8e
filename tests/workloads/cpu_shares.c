/* Ground truth for CPU attribution: burn_a, burn_b and burn_c spend 60/30/10 % of this
 * process's CPU time. Usage: cpu_shares SECONDS. Build: gcc -O0 -fno-omit-frame-pointer -g */
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

/* Each burn_* spins in its own body (no shared helper) so the leaf address lies inside it. */
__attribute__((noinline)) void burn_a(unsigned long n) {
    for (volatile unsigned long i = 0; i < n; i++)
        sink += i;
}

__attribute__((noinline)) void burn_b(unsigned long n) {
    for (volatile unsigned long i = 0; i < n; i++)
        sink += i;
}

__attribute__((noinline)) void burn_c(unsigned long n) {
    for (volatile unsigned long i = 0; i < n; i++)
        sink += i;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    double end = now() + seconds;
    const unsigned long chunk = 4000; /* a few microseconds: far below any sampling period */
    unsigned int state = 12345;
    /* The next function is drawn at random (60/30/10) rather than in a fixed cycle: a
     * periodic schedule can alias with a fixed-rate sampler and skew the shares. */
    while (now() < end) {
        for (int k = 0; k < 100; k++) {
            state = state * 1103515245u + 12345u;
            unsigned int r = (state >> 16) % 10;
            if (r < 6)
                burn_a(chunk);
            else if (r < 9)
                burn_b(chunk);
            else
                burn_c(chunk);
        }
    }
    return 0;
}
