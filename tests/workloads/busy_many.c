/* One of many small distinct binaries for the busy-host tests (issue #16): built once per
 * -DHOT=hot_<i>, so each has its own hot function (and build id). It burns about 0.3 ms in
 * HOT per 2 ms until argv[1] seconds have passed, reading the clock seldom so the time is
 * spent in HOT itself, not in the vDSO. */
#include <stdlib.h>
#include <time.h>

#ifndef HOT
#define HOT hot_0
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((noinline)) void HOT(double until) {
    volatile unsigned long x = 0;
    do {
        for (int k = 0; k < 20000; k++)
            x += k;
    } while (now() < until);
}

int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 5.0);
    struct timespec nap = {0, 1700000};
    while (now() < end) {
        HOT(now() + 0.0003);
        nanosleep(&nap, 0);
    }
    return 0;
}
