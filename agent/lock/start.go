package lock

import (
	"errors"
	"fmt"
	"io/fs"

	"syncagent/agent/prefs"
)

// Start is what a start runs, as Lock.Start decided it. Nothing is written
// until Commit, which the daemon calls only once the start serves: a start
// that fails (a port in use, another agent on the socket) provisions nothing
// and spends no code.
type Start struct {
	// Prefs are the prefs to run: the file's, or the last good ones when
	// the file was rejected.
	Prefs *prefs.Prefs
	// State is "ok", or "rejected" when the file is not what runs.
	State string
	// Error says why the file was rejected.
	Error string
	// UnlockedBy names the code or window that allowed the file (after
	// Commit).
	UnlockedBy string

	l     *Lock
	path  string
	file  *prefs.Prefs // the file's prefs, when they parsed
	data  []byte       // the bytes of Prefs, to keep as last good
	grant grant
	fresh bool // there were no last good prefs: the file provisions the box
}

// Start decides which prefs a start runs from the exact bytes read from the
// prefs file at path (readErr when it could not be read):
//
//   - a fresh box (no last good prefs, nothing showing it was provisioned)
//     runs a valid file, which becomes its provisioning when it has
//     sync_id > 0;
//   - a provisioned box runs the file when the lock allows the change from
//     its last good prefs, and the last good prefs otherwise (also when the
//     file is missing or invalid, under systemd or not), with the reason in
//     Error;
//   - a box that shows it was provisioned but has lost its last good prefs
//     is refused (logged as an error) unless the file carries an unlock code
//     for exactly its own locked settings.
//
// An error means there is nothing to run.
func (l *Lock) Start(path string, data []byte, readErr error) (*Start, error) {
	file, fileErr := (*prefs.Prefs)(nil), readErr
	if fileErr == nil {
		file, fileErr = prefs.Parse(path, data)
	}
	s := &Start{l: l, path: path, State: "ok", file: file}
	good, goodData, goodErr := l.LastGood()
	if goodErr != nil {
		l.log.Error("the last good prefs are unreadable", "path", l.path(LastGoodName), "err", goodErr)
	}
	switch {
	case good == nil && fileErr != nil:
		if errors.Is(fileErr, fs.ErrNotExist) {
			return nil, fmt.Errorf("no prefs file at %s: install one (see /usr/share/doc/syncagent/prefs.toml) or pass --prefs", path)
		}
		return nil, fmt.Errorf("invalid prefs, nothing started: %w", fileErr)
	case good == nil:
		s.Prefs, s.data, s.fresh = file, data, true
		evidence := l.evidence()
		if goodErr != nil {
			evidence = "its last good prefs " + l.path(LastGoodName) + " exist but are unreadable"
		}
		if evidence != "" {
			return l.reprovision(s, evidence)
		}
		if err := l.CheckKeyring(file); err != nil {
			return nil, fmt.Errorf("invalid prefs, nothing started: %w", err)
		}
		return s, nil
	case fileErr != nil:
		l.log.Error("prefs file rejected; running the last good prefs", "err", fileErr)
		return s.runLastGood(good, goodData, FirstLine(fileErr)), nil
	}
	if file.Paths.VendorKeys != good.Paths.VendorKeys {
		if err := l.CheckKeyring(file); err != nil {
			l.log.Error("prefs file rejected; running the last good prefs", "err", err)
			return s.runLastGood(good, goodData, err.Error()), nil
		}
	}
	g, err := l.authorise(good, file, l.Provisioned())
	if err != nil {
		l.log.Error("prefs change refused; running the last good prefs", "err", err)
		return s.runLastGood(good, goodData, err.Error()), nil
	}
	s.Prefs, s.data, s.grant = file, data, g
	return s, nil
}

func (s *Start) runLastGood(good *prefs.Prefs, data []byte, why string) *Start {
	good.Source = s.path
	s.Prefs, s.data, s.State, s.Error = good, data, "rejected", why
	return s
}

// reprovision is the start of a box that shows it was provisioned (evidence)
// but has no last good prefs: someone emptied or moved its lock directory.
// Only a code for exactly the file's locked settings provisions it again,
// signed with a built-in key (a vendor_keys file cannot vouch for the prefs
// that name it), or an open maintenance window in the ledger.
func (l *Lock) reprovision(s *Start, evidence string) (*Start, error) {
	digest := s.file.LockedDigest()
	var why string
	if code := s.file.Unlock.Code; code != "" {
		g, err := l.check(nil, "re-provisioning", digest, code)
		if err == nil {
			l.log.Warn("a provisioned box without its last good prefs is provisioned again by an unlock code", "evidence", evidence)
			s.grant = g
			return s, nil
		}
		why = "; the code in [unlock] code was " + err.Error()
	} else if g, err := l.check(nil, "re-provisioning", digest, ""); err == nil {
		s.grant = g // an open maintenance window
		return s, nil
	}
	err := fmt.Errorf("this box was provisioned (%s), but its last good prefs %s are missing: it is not provisioned again from %s. Put its lock directory %s back as it was, or ask the vendor for an unlock code for this file (change digest %s), signed with a key built into syncagent, and put it in [unlock] code%s",
		evidence, l.path(LastGoodName), s.path, l.opts.Dir, digest, why)
	l.log.Error("refused to provision an already provisioned box again", "evidence", evidence, "err", err)
	return nil, err
}

// Confirm tells the start what the datafile it opened shows: datafile is ""
// when it shows nothing, else why it shows the box was provisioned (it
// carries DatafileMeta; a primary's central datafile exists). A fresh-looking
// lock directory next to such a datafile was emptied, and the start is
// refused as Start refuses one with a ledger.
func (s *Start) Confirm(datafile string) error {
	if !s.fresh || datafile == "" || s.grant.by != "" || s.grant.redeem != nil {
		return nil
	}
	_, err := s.l.reprovision(s, datafile)
	return err
}

// Commit makes the start's decision durable once the agent serves: it spends
// the code that allowed the file, keeps exactly the bytes that were verified
// as the last good prefs, and marks the box provisioned when they have
// sync_id > 0. If it fails, the start must fail too.
func (s *Start) Commit() error {
	by, err := s.grant.spend()
	if err != nil {
		return err
	}
	s.UnlockedBy = by
	return s.l.keep(s.data, s.Prefs)
}

// Fresh reports whether the start provisions a box that had no last good
// prefs.
func (s *Start) Fresh() bool { return s.fresh }
