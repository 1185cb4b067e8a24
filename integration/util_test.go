package integration

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"time"
)

// bufioReader reads lines with a timeout.
type bufioReader struct {
	lines chan string
	err   chan error
}

func newBufioReader(r io.Reader) *bufioReader {
	b := &bufioReader{lines: make(chan string, 64), err: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			b.lines <- sc.Text()
		}
		b.err <- errors.Join(sc.Err(), io.EOF)
	}()
	return b
}

func (b *bufioReader) readLine(timeout time.Duration) (string, error) {
	select {
	case l := <-b.lines:
		return strings.TrimRight(l, "\r"), nil
	case err := <-b.err:
		return "", err
	case <-time.After(timeout):
		return "", errors.New("timeout")
	}
}

func base64Key(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
