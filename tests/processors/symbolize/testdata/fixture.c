/* Ground truth for the symbolizer: prints the runtime addresses of its functions, then
   waits until stdin closes. Built -O0 -g -fno-omit-frame-pointer, PIE and non-PIE. */
#include <stdio.h>
#include <unistd.h>

void lib_report(void);
int lib_compute(int n);

__attribute__((noinline)) int leaf_work(int n) { /* LINE:leaf_work */
    int s = 0;
    for (int i = 0; i < n; i++)
        s += i;
    return s;
}

__attribute__((noinline)) int caller_work(int n) { /* LINE:caller_work */
    return leaf_work(n) + lib_compute(n);
}

int main(void) {
    printf("leaf_work %p\n", (void *)leaf_work);
    printf("caller_work %p\n", (void *)caller_work);
    lib_report();
    printf("ready\n");
    fflush(stdout);
    char buf[16];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return caller_work(3) > 1000;
}
