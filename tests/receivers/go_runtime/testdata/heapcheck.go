// The alloc signal against runtime/pprof's own allocation profile of the same run: the
// receiver probes runtime.profilealloc, the very allocations the runtime's heap profiler
// samples, so both should agree per function (and with the truth, within sampling error).
// Arguments: MemProfileRate (bytes), the path to write the "allocs" profile to.
// Prints "ready", waits for a line, allocates 800 000 x 64 B from main.allocSmall and
// 2 000 x 32 KiB from main.allocBig, writes the profile, prints "done", waits for a line.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
)

var sink [][]byte

//go:noinline
func allocSmall(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 64)
		b[0] = byte(i)
		sink = append(sink, b)
		if len(sink) > 64 {
			sink = sink[:0]
		}
	}
}

//go:noinline
func allocBig(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 32768)
		b[0] = byte(i)
		sink = append(sink, b)
		if len(sink) > 64 {
			sink = sink[:0]
		}
	}
}

func main() {
	rate, err := strconv.Atoi(os.Args[1])
	if err != nil {
		os.Exit(2)
	}
	runtime.MemProfileRate = rate // read by the receiver at each sample
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(3)
	}
	allocSmall(800000) // ~780 samples at 64 KiB: 200 000 (195) missed the truth by 25 % once
	allocBig(2000)
	// A cycle publishes the samples taken before it; two leave none pending.
	runtime.GC()
	runtime.GC()
	f, err := os.Create(os.Args[2])
	if err != nil {
		os.Exit(4)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		os.Exit(5)
	}
	f.Close()
	fmt.Println("done")
	in.ReadString('\n')
}
