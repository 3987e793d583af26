package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// rawClient is an app with a lean HTTP/1.1 client: one kept-alive
// connection, the request written in one call, the answer read by its
// Content-Length (or chunks). Go's net/http client costs about as much CPU
// a request as the agent's whole put on these shared cores, and a clinic's
// apps are not Go programs; the `-client go` run measures with it.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	body []byte
}

func dialRaw(sock string) (*rawClient, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// do sends one request and returns the status and the answer's body (valid
// until the next call).
func (c *rawClient) do(method, path string, body []byte) (int, []byte, error) {
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	c.req = append(c.req[:0], method...)
	c.req = append(c.req, ' ')
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, nil, err
	}
	status, length, chunked := 0, -1, false
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("reading the answer: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			f := bytes.Fields(line)
			if len(f) < 2 {
				return 0, nil, fmt.Errorf("bad status line %q", line)
			}
			status, _ = strconv.Atoi(string(f[1]))
			continue
		}
		if len(line) == 0 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Transfer-Encoding")) && bytes.EqualFold(v, []byte("chunked")):
			chunked = true
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		for {
			line, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimRight(line, "\r\n")), 16, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				_, err := c.r.ReadSlice('\n')
				return status, c.body, err
			}
			if err := c.read(int(n)); err != nil {
				return 0, nil, err
			}
			if _, err := c.r.Discard(2); err != nil {
				return 0, nil, err
			}
		}
	case length >= 0:
		return status, c.body, c.read(length)
	}
	return 0, nil, fmt.Errorf("an answer without Content-Length or chunks")
}

func (c *rawClient) read(n int) error {
	start := len(c.body)
	c.body = append(c.body, make([]byte, n)...)
	_, err := io.ReadFull(c.r, c.body[start:])
	return err
}

func (c *rawClient) Close() error { return c.conn.Close() }
