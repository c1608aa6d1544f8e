// The target must never crash while probed: goroutine stacks grow (and are copied to new
// memory) thousands of times under uprobes on mallocgc, gopark, ready, execute, newproc.
// A uretprobe would break exactly here ("unknown caller pc"). Prints the checksum and exits 0.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
)

//go:noinline
func deep(n int, pad [64]byte) int {
	if n == 0 {
		b := make([]byte, 256) // an allocation at the bottom of a freshly grown stack
		runtime.Gosched()
		return int(b[0]) + int(pad[0])
	}
	pad[n%64] = byte(n)
	return deep(n-1, pad) + 1
}

func main() {
	rounds := 200
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil {
			rounds = v
		}
	}
	fmt.Println("ready") // then wait for a line: the test attaches first
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(3)
	}
	results := make(chan int)
	total := 0
	for r := 0; r < rounds; r++ {
		for w := 0; w < 8; w++ {
			go func(depth int) { results <- deep(depth, [64]byte{}) }(2000 + 500*w)
		}
		for w := 0; w < 8; w++ {
			total += <-results
		}
		if r%50 == 0 {
			runtime.GC()
		}
	}
	fmt.Println("total", total)
}
