package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/queue"
	"syncagent/queue/pg"
)

// hashedRows are site rows whose password hashes match no password.
type hashedRows struct {
	file string
	rows []primary.SiteRow
}

// unmatchableRows rewrites the rows of file with hashes that have the
// agent's iteration count, a random salt and a random key: well formed,
// slow to check, matched by no password.
func unmatchableRows(file string) (hashedRows, error) {
	var rows []primary.SiteRow
	b, err := os.ReadFile(file)
	if err != nil {
		return hashedRows{}, err
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return hashedRows{}, err
	}
	enc := base64.RawStdEncoding
	for i := range rows {
		salt, key := make([]byte, 16), make([]byte, 32)
		rand.Read(salt)
		rand.Read(key)
		rows[i].PasswordHash = fmt.Sprintf("%s$%d$%s$%s", passwd.Scheme, agentIterations, enc.EncodeToString(salt), enc.EncodeToString(key))
	}
	out := hashedRows{file: filepath.Join(filepath.Dir(file), "rows-unmatchable.json"), rows: rows}
	js, _ := json.Marshal(rows)
	return out, os.WriteFile(out.file, js, 0o600)
}

// seedFleet writes into the setup's storage what a running fleet leaves
// there: each site pinned to its hardware ID, and the token of its password
// as agent/primary makes it (auth.go: an HMAC-SHA256 under the auth key of
// the stored hash, a zero byte and the presented password's SHA-256). If
// that formula changes, every login of the restart fails: loudly.
func (b *bench) seedFleet(st *setup, rows hashedRows, key []byte) error {
	var store queue.PrimaryStore
	var err error
	if st.kind == "bunt" {
		store, err = queue.OpenCentral(filepath.Join(st.dir, "central.db"), queue.CentralOptions{})
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		store, err = pg.Open(ctx, b.cluster.DSN(st.db), pg.Options{})
		cancel()
	}
	if err != nil {
		return err
	}
	defer store.Close()
	presented := map[int]*string{}
	for _, s := range b.sites {
		presented[s.ID] = &s.Password
	}
	for _, r := range rows.rows {
		pw := presented[r.SyncID]
		if pw == nil || !strings.HasPrefix(r.User, "site-") {
			continue // a loader
		}
		if _, err := store.Pin(r.SyncID, fmt.Sprintf("hw-%d", r.SyncID)); err != nil {
			return err
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(r.PasswordHash))
		m.Write([]byte{0})
		m.Write([]byte(*pw))
		if err := store.SetVerified(r.SyncID, hex.EncodeToString(m.Sum(nil))); err != nil {
			return err
		}
	}
	return nil
}
