/* Benchmark load: spins for SECONDS and prints how many loop iterations it completed.
 * Throughput with and without a profiler gives the profiler's slowdown. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static unsigned long spin(unsigned long n) {
    volatile unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++)
        s += i;
    return s;
}

int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 10.0);
    unsigned long chunks = 0;
    while (now() < end) {
        spin(100000);
        chunks++;
    }
    printf("%lu\n", chunks);
    return 0;
}
