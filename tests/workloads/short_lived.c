/* Burns CPU for about 0.5 s in a uniquely named function, then exits: checks that samples of
 * a process that is gone by export time can still be symbolized.
 * Build: gcc -O0 -fno-omit-frame-pointer -g */
#include <time.h>

static volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
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
