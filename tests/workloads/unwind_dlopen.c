/* Ground truth for code mapped after a process was first sampled (build: gcc -O2 -g without
 * frame pointers, like its library): warm_up() burns CPU first, so a profiler loads the
 * process with the mappings it has then; then the library (argv[2], unwind_dlopen_lib.c) is
 * dlopen()ed and call_library() calls its lib_spin(), which burns the rest in lib_leaf().
 * An unwinder that learns of the new mapping shows call_library and main above lib_leaf.
 * Usage: unwind_dlopen SECONDS LIBRARY; prints "ready", waits for a line on stdin, prints
 * "loaded" after the dlopen and "done" at the end. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noipa)) void warm_up(double seconds) {
    double end = cpu_now() + seconds;
    while (cpu_now() < end)
        for (int i = 0; i < 1000; i++)
            sink += i;
}

/* Uses the result so that the call is not a tail call (a jmp leaves no frame of its own). */
__attribute__((noipa)) int call_library(double (*spin)(double), double seconds) {
    return spin(seconds) > 0.0 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    double seconds = atof(argv[1]);
    char line[16];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    warm_up(0.5);
    void *lib = dlopen(argv[2], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    double (*spin)(double) = (double (*)(double))dlsym(lib, "lib_spin");
    if (!spin)
        return 1;
    printf("loaded\n");
    fflush(stdout);
    sink += call_library(spin, seconds);
    printf("done\n");
    return 0;
}
