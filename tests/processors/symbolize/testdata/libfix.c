/* Shared-library half of the symbolize fixture. */
#include <stdio.h>

__attribute__((noinline)) int lib_compute(int n) { /* LINE:lib_compute */
    int s = 0;
    for (int i = 0; i < n; i++)
        s += i * 3;
    return s;
}

/* The library reports its own function's address: an address taken in the executable
   could be a PLT stub in a non-PIE binary. */
void lib_report(void) {
    printf("lib_compute %p\n", (void *)lib_compute);
}
