/* The library unwind_dlopen.c loads with dlopen (build: -O2 without frame pointers, -shared
 * -fPIC): lib_spin() burns `seconds` of CPU time in lib_leaf(). */
#include <time.h>

static volatile unsigned long sink;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noipa)) unsigned long lib_leaf(int n) {
    unsigned long s = 0;
    for (int i = 0; i < n; i++)
        s += (unsigned long)i * i;
    return s;
}

double lib_spin(double seconds) {
    double start = cpu_now(), end = start + seconds;
    while (cpu_now() < end)
        sink += lib_leaf(20000);
    return cpu_now() - start;
}
