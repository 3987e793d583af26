// Package loopback lays out a primary and its satellites on this machine:
// state directories, control sockets, passwords and prefs files that point
// the satellites at the primary over loopback. The demo and the crash soak
// run agents on such a layout.
//
// Imported by agent/demo and testtools/soak.
package loopback

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"syncagent/agent/passwd"
)

// Site is one agent of the layout. The first site given to Write must be the
// primary (SyncID 1).
type Site struct {
	Name   string
	SyncID int
	Stores []string

	// Filled in by Write.
	Dir    string // state directory
	Socket string // control socket
	Prefs  string // prefs file
}

// Layout is a primary and its satellites, written under one directory.
type Layout struct {
	Addr  string // the primary's sync API, host:port on loopback
	Sites []*Site
}

// Write creates each site's state directory and prefs file under dir, with
// a fresh password per satellite and interval_minutes as given.
func Write(dir string, intervalMinutes int, sites ...*Site) (*Layout, error) {
	if len(sites) == 0 || sites[0].SyncID != 1 {
		return nil, fmt.Errorf("loopback: the first site must be the primary (sync_id 1)")
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	sha, hash := map[string]string{}, map[string]string{}
	for _, s := range sites[1:] {
		sha[s.Name] = passwd.SHA256Hex("loopback-password-" + s.Name)
		if hash[s.Name], err = passwd.Hash(sha[s.Name]); err != nil {
			return nil, err
		}
	}
	for _, s := range sites {
		s.Dir = filepath.Join(dir, s.Name)
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, err
		}
		s.Socket = filepath.Join(s.Dir, "control.sock")
		s.Prefs = filepath.Join(s.Dir, "prefs.toml")
		var b strings.Builder
		fmt.Fprintf(&b, "version = 1\n\n[site]\nsync_id = %d\ninterval_minutes = %d\n", s.SyncID, intervalMinutes)
		if len(s.Stores) > 0 {
			fmt.Fprintf(&b, "stores = %s\n", tomlList(s.Stores))
		}
		fmt.Fprintf(&b, "\n[paths]\nstate_dir = %q\ncontrol_socket = %q\n", s.Dir, s.Socket)
		if s.SyncID == 1 {
			fmt.Fprintf(&b, "\n[listen]\naddress = %q\n", addr)
			for _, sat := range sites[1:] {
				fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = %d\nuser = %q\npassword_hash = %q\nstores = %s\n",
					sat.SyncID, sat.Name, hash[sat.Name], tomlList(sat.Stores))
			}
		} else {
			fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = 1\nuser = %q\npassword_sha256 = %q\nurl = %q\n", s.Name, sha[s.Name], "http://"+addr)
		}
		if err := os.WriteFile(s.Prefs, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
	}
	return &Layout{Addr: addr, Sites: sites}, nil
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
