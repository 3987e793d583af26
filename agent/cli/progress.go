package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// showProgress prints a first sync's progress to stderr while a sync runs,
// from the agent's status once a second: one line rewritten in place on a
// terminal, a new line every 10 s otherwise (a log). stop ends it.
func showProgress(ctx context.Context, e *env) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	live := isTerminal(e.stderr)
	every := time.Second
	if !live {
		every = 10 * time.Second
	}
	var wg sync.WaitGroup
	wg.Add(1)
	shown := false
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := e.client().Status(qctx)
			qcancel()
			if err != nil || st.FirstSync == nil {
				continue
			}
			line := "first sync " + st.FirstSync.Line()
			if live {
				fmt.Fprintf(e.stderr, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(e.stderr, line)
			}
			shown = true
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		if live && shown {
			fmt.Fprintln(e.stderr)
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
