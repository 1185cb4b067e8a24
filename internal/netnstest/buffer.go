package netnstest

import (
	"bytes"
	"sync"
)

// Buffer collects a command's output while tests read it: give it to
// exec.Cmd.Stdout or Stderr, and call String at any time. (exec writes from
// its own goroutine; a bytes.Buffer or strings.Builder read meanwhile is a
// data race.)
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
