// Shared by the lab's Go clients (built with it: go build go_client.go callstack.go).
package main

import (
	"runtime"
	"strings"
)

// callStack names the functions on the calling goroutine's stack, innermost first, joined
// by " | ": which driver code is dialling a socket.
func callStack() string {
	buf := make([]byte, 1<<16)
	buf = buf[:runtime.Stack(buf, false)]
	var frames []string
	for _, line := range strings.Split(string(buf), "\n") {
		// Function lines, not the goroutine header or the file:line lines under them.
		if line != "" && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "goroutine ") {
			frames = append(frames, line)
		}
	}
	return strings.Join(frames, " | ")
}
