/* Ground truth for unwinding tasks as they block (build: gcc -O2 -g): sleeper() waits in
 * nanosleep(2) 1 ms at a time, so nearly every switch-out of this process happens inside
 * libc's clock_nanosleep called from sleeper(), called from main().
 * Usage: unwind_sleeper SECONDS; prints "ready", waits for a line on stdin, prints naps=N. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noipa)) long sleeper(long naps) {
    struct timespec ts = {0, 1000000};
    long done = 0;
    for (long i = 0; i < naps; i++)
        done += nanosleep(&ts, NULL) == 0;
    return done;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    char line[16];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    long naps = sleeper((long)(seconds * 1000));
    printf("naps=%ld\n", naps);
    return 0;
}
