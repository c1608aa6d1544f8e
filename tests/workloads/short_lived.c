/* Burns 0.5 s of CPU time in a uniquely named function, then exits: checks that samples of
 * a process that is gone by export time can still be symbolized. CPU time, not wall time: on
 * a loaded machine a wall-clock deadline gave the process a third of the CPU, and a third of
 * the samples the tests count on (37 of ~99 at 199 Hz).
 * Build: gcc -O0 -fno-omit-frame-pointer -g */
#include <time.h>

static volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void short_lived_burn_7f3a(double seconds) {
    double end = now() + seconds;
    while (now() < end)
        for (volatile int i = 0; i < 100000; i++)
            sink += i;
}

int main(void) {
    short_lived_burn_7f3a(0.5);
    return 0;
}
