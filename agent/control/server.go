package control

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"syncagent/jsonscan"
)

// Backend is what the daemon offers through the local API.
type Backend interface {
	Status() Status
	Sync(ctx context.Context, retrieveOnly bool) (Cycle, error)
	Check(ctx context.Context) (Check, error)
	Generate(ctx context.Context, fresh bool) (Generated, error)
	Sites() ([]Site, error)
	ClearHardwareID(syncID int, code string) error
	PutRecord(r Record) (Record, error)
	// PutRecords writes many records (Action "delete" deletes): on a
	// satellite in one commit, all or nothing. A refused record is a
	// *BatchError.
	PutRecords(rs []Record) (BatchResult, error)
	GetRecord(table, id string) (Record, error)
	DeleteRecord(table, id string) error
	ListRecords(table, after string, limit int) ([]Record, error)
	Aside() ([]Aside, error)
	RetryAside(table, id string) error
	Reload() (Reload, error)
	Unlock() (Unlock, error)
	// History lists the last sync cycles, newest first.
	History() ([]Cycle, error)
	// CheckCode says whether code would unlock the change on disk,
	// without spending it.
	CheckCode(code string) error
	// ResetClock resets an unlock ledger whose trusted time is ahead of
	// the clock, with a code bound to that reset.
	ResetClock(code string) (Unlocked, error)
}

// Error is a local API failure with the HTTP status to answer.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// MaxBody bounds a local API request body.
const MaxBody = 4 << 20

// Handler routes the local API to b. Every caller that can open the socket
// (root and the socket's group) may read and write records and use the
// read-only commands; the operations that can cost a site its data need a
// privileged caller (Permit).
func Handler(b Backend, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, f func(r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, serveJSON(MaxBody, log, f))
	}
	handle("GET /v1/status", func(*http.Request) (any, error) { return b.Status(), nil })
	handle("POST /v1/sync", func(r *http.Request) (any, error) { return b.Sync(r.Context(), false) })
	handle("POST /v1/retrieve", func(r *http.Request) (any, error) { return b.Sync(r.Context(), true) })
	handle("POST /v1/check", func(r *http.Request) (any, error) { return b.Check(r.Context()) })
	handle("POST /v1/generate", func(r *http.Request) (any, error) {
		switch mode := r.URL.Query().Get("mode"); mode {
		case "new", "existing":
			if mode == "new" {
				if err := Permit(r, "generate --new (it resets what this site has pulled)"); err != nil {
					return nil, err
				}
			}
			return b.Generate(r.Context(), mode == "new")
		default:
			return nil, Errorf(http.StatusBadRequest, "generate needs mode new or existing, not %q", mode)
		}
	})
	handle("GET /v1/sites", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		if l, ok := b.(SiteLister); ok && (q.Get("filter") != "" || q.Get("store") != "") {
			return l.SitesMatching(q.Get("filter"), q.Get("store"))
		}
		return b.Sites()
	})
	handle("POST /v1/sites/{id}/clear-hwid", func(r *http.Request) (any, error) {
		if err := Permit(r, "clear-hwid (the next box to call as that site takes it over)"); err != nil {
			return nil, err
		}
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			return nil, Errorf(http.StatusBadRequest, "site id %q is not a number", r.PathValue("id"))
		}
		var body struct {
			Code string `json:"code"`
		}
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		return struct{}{}, b.ClearHardwareID(id, body.Code)
	})
	handle("PUT /v1/records/{table}/{id}", func(r *http.Request) (any, error) {
		data, err := readJSON(r)
		if err != nil {
			return nil, err
		}
		return b.PutRecord(Record{Table: r.PathValue("table"), ID: r.PathValue("id"), Data: data})
	})
	handle("POST /v1/records", func(r *http.Request) (any, error) {
		body, err := readBody(r)
		if err != nil {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "batch too large or unreadable (at most %d bytes and %d records a request: send the rest in another): %v", MaxBody, MaxBatchRecords, err)
		}
		recs, lines, err := DecodeLines(body)
		if err != nil {
			return nil, err
		}
		res, err := b.PutRecords(recs)
		var be *BatchError
		if errors.As(err, &be) && be.Index >= 0 && be.Index < len(lines) {
			// Nothing of the batch was written: say which line to fix.
			return nil, &LineError{Line: lines[be.Index], Msg: be.Msg + "; nothing of this batch was written", Status: be.Status}
		}
		return res, err
	})
	handle("GET /v1/records/{table}/{id}", func(r *http.Request) (any, error) {
		return b.GetRecord(r.PathValue("table"), r.PathValue("id"))
	})
	handle("DELETE /v1/records/{table}/{id}", func(r *http.Request) (any, error) {
		return struct{}{}, b.DeleteRecord(r.PathValue("table"), r.PathValue("id"))
	})
	handle("GET /v1/records/{table}", func(r *http.Request) (any, error) {
		limit := 1000
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return nil, Errorf(http.StatusBadRequest, "limit must be 1 to 10000")
			}
			limit = n
		}
		return b.ListRecords(r.PathValue("table"), r.URL.Query().Get("after"), limit)
	})
	handle("GET /v1/aside", func(*http.Request) (any, error) { return b.Aside() })
	handle("POST /v1/aside/{table}/{id}/retry", func(r *http.Request) (any, error) {
		return struct{}{}, b.RetryAside(r.PathValue("table"), r.PathValue("id"))
	})
	handle("POST /v1/prefs/reload", func(*http.Request) (any, error) { return b.Reload() })
	handle("GET /v1/unlock", func(*http.Request) (any, error) { return b.Unlock() })
	handle("POST /v1/unlock/check", func(r *http.Request) (any, error) {
		var body CodeRequest
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		return struct{}{}, b.CheckCode(body.Code)
	})
	handle("POST /v1/unlock/reset-clock", func(r *http.Request) (any, error) {
		if err := Permit(r, "reset-clock"); err != nil {
			return nil, err
		}
		var body CodeRequest
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		return b.ResetClock(body.Code)
	})
	handle("GET /v1/history", func(*http.Request) (any, error) { return b.History() })
	if fb, ok := b.(FleetBackend); ok {
		fleetRoutes(mux, handle, fb)
	}
	if rb, ok := b.(RegistryBackend); ok {
		registryRoutes(mux, handle, log, rb)
	}
	return mux
}

// serveJSON answers f's result as JSON, or its error with its status,
// reading at most limit bytes of body.
func serveJSON(limit int64, log *slog.Logger, f func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		out, err := f(r)
		if err != nil {
			status := http.StatusInternalServerError
			var ce *Error
			var le *LineError
			body := ErrorBody{Error: err.Error()}
			switch {
			case errors.As(err, &ce):
				status = ce.Status
			case errors.As(err, &le):
				status, body.Line = cmp.Or(le.Status, http.StatusBadRequest), le.Line
			}
			if status >= 500 {
				log.Warn("local API call failed", "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, body)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func decode(r *http.Request, v any) error {
	body, err := readJSON(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return Errorf(http.StatusBadRequest, "request body is not valid JSON: %v", err)
	}
	return nil
}

// readJSON reads a request body that must be JSON, checked in one quick
// pass (a record's data is kept as sent: no decode and re-encode).
func readJSON(r *http.Request) ([]byte, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, Errorf(http.StatusRequestEntityTooLarge, "request body too large or unreadable: %v", err)
	}
	if valid, _ := jsonscan.Check(body); !valid {
		var v any
		err := json.Unmarshal(body, &v) // says what is wrong, and where
		return nil, Errorf(http.StatusBadRequest, "request body is not valid JSON: %v", err)
	}
	return body, nil
}

// readBody reads a request's body (bounded by serveJSON), in one buffer of
// its announced length: a batch's 4 MiB are not copied through a buffer
// grown by doubling.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= MaxBody {
		b := make([]byte, n)
		// net/http's body reader ends at the announced length.
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(r.Body)
}

// WriteJSON answers v as JSON with status, as every local API call does.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r, ok := v.(Record); ok {
		// The answer to every put and get: by hand, its data as it is
		// (compact JSON the queue checked), not compacted once more.
		w.Write(r.appendJSON(make([]byte, 0, 64+len(r.Data))))
		return
	}
	json.NewEncoder(w).Encode(v)
}

// Listen opens the control socket at path, replacing a stale socket file left
// by a killed agent but refusing to steal one a live agent answers on.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("cannot use control socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another syncagent is already running (it answers on %s)", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on control socket %s: %w", path, err)
	}
	// Apps in the agent's group may use the local API; nobody else.
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("cannot set the control socket's mode: %w", err)
	}
	return l, nil
}

// NewServer returns an http.Server for the control socket, with the timeouts
// a local API needs (a sync request may legitimately take minutes), and the
// peer credentials of each connection in its requests' context (Permit).
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cred, ok := peerCred(c); ok {
				return context.WithValue(ctx, peerKey{}, cred)
			}
			return ctx
		}}
}

type peerKey struct{}

// Peer is who is on the other end of a control socket connection, from the
// kernel (SO_PEERCRED), not from anything the caller says.
type Peer struct {
	UID, GID uint32
	PID      int32
}

func peerCred(c net.Conn) (Peer, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, false
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return Peer{}, false
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, true
}

// PeerOf returns the caller of r, when the request came over a unix socket.
func PeerOf(r *http.Request) (Peer, bool) {
	p, ok := r.Context().Value(peerKey{}).(Peer)
	return p, ok
}

// Privileged reports whether a caller with uid may run the operations that
// can cost a site its data: root, or the user the agent itself runs as
// (who owns the datafile anyway). Apps in the socket's group are neither.
func Privileged(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

// Permit refuses (403) a request for a privileged operation from a caller
// who is not privileged.
func Permit(r *http.Request, what string) error {
	p, ok := PeerOf(r)
	if ok && Privileged(p.UID) {
		return nil
	}
	who := "a caller whose credentials are unknown"
	if ok {
		who = fmt.Sprintf("user %d", p.UID)
	}
	return Errorf(http.StatusForbidden, "%s needs root on the control socket, and %s is not: run it with sudo", what, who)
}
