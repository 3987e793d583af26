// Package loopback lays out a primary and its satellites on this machine:
// state directories, control sockets, passwords and prefs files that point
// the satellites at the primary over loopback. The demo and the crash soak
// run agents on such a layout.
//
// Imported by agent/demo and the test tooling (testtools/soak, testtools/e2e).
package loopback

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
)

// Site is one agent of the layout. The first site given to Write must be the
// primary (SyncID 1).
type Site struct {
	Name   string
	SyncID int
	Stores []string
	Edit   func(p *prefs.Prefs) // more settings, made before the file is written; may be nil

	// Filled in by Write where left empty.
	Dir    string // state directory: dir/Name
	Socket string // control socket: Dir/control.sock
	Prefs  string // prefs file: dir/Name/prefs.toml
}

// Password is the SHA-256 hex a satellite of the layout presents.
func Password(name string) string { return passwd.SHA256Hex("loopback-password-" + name) }

// Layout is a primary and its satellites, written under one directory.
type Layout struct {
	Addr  string // the primary's sync API, host:port on loopback
	Sites []*Site
}

// Write creates each site's state directory and prefs file under dir, with
// a fresh password per satellite and interval_minutes as given.
func Write(dir string, intervalMinutes int, sites ...*Site) (*Layout, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	return WriteAt(dir, addr, intervalMinutes, sites...)
}

// WriteAt is Write with the primary listening on addr.
func WriteAt(dir, addr string, intervalMinutes int, sites ...*Site) (*Layout, error) {
	if len(sites) == 0 || sites[0].SyncID != 1 {
		return nil, fmt.Errorf("loopback: the first site must be the primary (sync_id 1)")
	}
	var err error
	sha, hash := map[string]string{}, map[string]string{}
	for _, s := range sites[1:] {
		sha[s.Name] = Password(s.Name)
		if hash[s.Name], err = passwd.Hash(sha[s.Name]); err != nil {
			return nil, err
		}
	}
	for _, s := range sites {
		s.Dir = or(s.Dir, filepath.Join(dir, s.Name))
		s.Socket = or(s.Socket, filepath.Join(s.Dir, "control.sock"))
		s.Prefs = or(s.Prefs, filepath.Join(dir, s.Name, "prefs.toml"))
		for _, d := range []string{s.Dir, filepath.Dir(s.Prefs)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
		p := prefs.Prefs{
			Site:  prefs.Site{SyncID: s.SyncID, IntervalMinutes: intervalMinutes, Stores: s.Stores},
			Paths: prefs.Paths{StateDir: s.Dir, ControlSocket: s.Socket},
		}
		if s.SyncID == 1 {
			p.Listen.Address = addr
			for _, sat := range sites[1:] {
				p.SyncWith = append(p.SyncWith, prefs.Peer{SyncID: sat.SyncID, User: sat.Name, PasswordHash: hash[sat.Name], Stores: sat.Stores})
			}
		} else {
			p.SyncWith = []prefs.Peer{{SyncID: 1, User: s.Name, PasswordSHA256: sha[s.Name], URL: "http://" + addr}}
		}
		if s.Edit != nil {
			s.Edit(&p)
		}
		if err := os.WriteFile(s.Prefs, prefs.Encode(&p), 0o600); err != nil {
			return nil, err
		}
	}
	return &Layout{Addr: addr, Sites: sites}, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
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
