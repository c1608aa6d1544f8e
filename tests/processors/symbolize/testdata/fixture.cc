// C++ fixture: mangled names the symbolizer must demangle.
#include <cstdio>
#include <unistd.h>
#include <vector>

namespace shapes {
struct Circle {
    __attribute__((noinline)) double area(double r) const { return 3.14159 * r * r; } // LINE:area
};
template <typename T>
__attribute__((noinline)) T twice(T v) { return v + v; } // LINE:twice
}  // namespace shapes

int main() {
    double (shapes::Circle::*area)(double) const = &shapes::Circle::area;
    (void)area;
    union { double (shapes::Circle::*m)(double) const; void *p[2]; } u;
    u.m = &shapes::Circle::area;
    std::printf("area %p\n", u.p[0]);
    std::printf("twice %p\n", (void *)&shapes::twice<int>);
    std::printf("ready\n");
    std::fflush(stdout);
    char buf[16];
    while (read(0, buf, sizeof buf) > 0) {
    }
    shapes::Circle c;
    return (int)c.area(1.0) + shapes::twice<int>(1) > 1000;
}
