package prefs

import (
	"bytes"
	"fmt"
	"slices"
)

// Change is one setting that differs between two Prefs.
type Change struct {
	// Key names the setting: "site.sync_id", "sync_with[2].url". A row added
	// or removed as a whole is "sync_with[2]": its index (from 0) in the file
	// that has it, the new one for an added row, the old one for a removed row.
	Key string
	// Note says which site a whole-row change is about: "added site 14",
	// "removed site 14"; "" for other changes.
	Note string
	// Locked: changing it needs an unlock code (everything but
	// site.interval_minutes and unlock.code).
	Locked bool
}

// Settings lists every Setting a Change can name, in file order: what the
// components that apply prefs must each either apply live or leave to a
// restart.
var Settings = []string{
	"version", "site.sync_id", "site.interval_minutes", "site.request_size", "site.stores",
	"paths.state_dir", "paths.control_socket", "paths.vendor_keys",
	"listen.address", "listen.tls_cert", "listen.tls_key", "listen.omsupply_central_server_url", "listen.trusted_proxies", "limits.outbox_max_records",
	"sync_with", "sync_with.user", "sync_with.password_sha256", "sync_with.password_hash",
	"sync_with.url", "sync_with.stores", "sync_with.hardware_id",
	"admin.address", "admin.user", "admin.password_hash", "admin.tls_cert", "admin.tls_key", "metrics.textfile_dir",
	"central.database", "central.database_password_file", "central.max_connections", "central.auth_key_file",
	"unlock.code",
}

// Setting is the key of a change without row indexes, the same for every
// row: "sync_with.url" for "sync_with[2].url", "sync_with" for an added or
// removed row. Components that apply prefs say by Setting what they can
// apply while running.
func (c Change) Setting() string {
	var b []byte
	skip := false
	for i := 0; i < len(c.Key); i++ {
		switch ch := c.Key[i]; {
		case ch == '[':
			skip = true
		case ch == ']':
			skip = false
		case !skip:
			b = append(b, ch)
		}
	}
	return string(b)
}

// Changes lists the settings that differ from old to new, in file order.
// Rows are matched by sync_id, not position, so moving a row is no change;
// stores compare as sets. A nil Prefs counts as the zero Prefs. Changes
// reports a Locked change exactly when !old.LockedEqual(new).
func Changes(old, new *Prefs) []Change {
	if old == nil {
		old = &Prefs{}
	}
	if new == nil {
		new = &Prefs{}
	}
	var out []Change
	diff := func(changed bool, key string, locked bool) {
		if changed {
			out = append(out, Change{Key: key, Locked: locked})
		}
	}
	o, n := old, new
	diff(o.Version != n.Version, "version", true)
	diff(o.Site.SyncID != n.Site.SyncID, "site.sync_id", true)
	diff(o.Site.IntervalMinutes != n.Site.IntervalMinutes, "site.interval_minutes", false)
	diff(o.Site.RequestSize != n.Site.RequestSize, "site.request_size", true)
	diff(!sameStores(o.Site.Stores, n.Site.Stores), "site.stores", true)
	diff(o.Paths.StateDir != n.Paths.StateDir, "paths.state_dir", true)
	diff(o.Paths.ControlSocket != n.Paths.ControlSocket, "paths.control_socket", true)
	diff(o.Paths.VendorKeys != n.Paths.VendorKeys, "paths.vendor_keys", true)
	diff(o.Listen.Address != n.Listen.Address, "listen.address", true)
	diff(o.Listen.TLSCert != n.Listen.TLSCert, "listen.tls_cert", true)
	diff(o.Listen.TLSKey != n.Listen.TLSKey, "listen.tls_key", true)
	diff(o.Listen.OmSupplyCentralServerURL != n.Listen.OmSupplyCentralServerURL, "listen.omsupply_central_server_url", true)
	diff(!sameStores(o.Listen.TrustedProxies, n.Listen.TrustedProxies), "listen.trusted_proxies", true)
	diff(o.Limits.OutboxMaxRecords != n.Limits.OutboxMaxRecords, "limits.outbox_max_records", true)
	out = append(out, rowChanges(o.SyncWith, n.SyncWith)...)
	diff(o.Admin.Address != n.Admin.Address, "admin.address", true)
	diff(o.Admin.User != n.Admin.User, "admin.user", true)
	diff(o.Admin.PasswordHash != n.Admin.PasswordHash, "admin.password_hash", true)
	diff(o.Admin.TLSCert != n.Admin.TLSCert, "admin.tls_cert", true)
	diff(o.Admin.TLSKey != n.Admin.TLSKey, "admin.tls_key", true)
	diff(o.Metrics.TextfileDir != n.Metrics.TextfileDir, "metrics.textfile_dir", true)
	diff(o.Central.Database != n.Central.Database, "central.database", true)
	diff(o.Central.DatabasePasswordFile != n.Central.DatabasePasswordFile, "central.database_password_file", true)
	diff(o.Central.MaxConnections != n.Central.MaxConnections, "central.max_connections", true)
	diff(o.Central.AuthKeyFile != n.Central.AuthKeyFile, "central.auth_key_file", true)
	diff(o.Unlock.Code != n.Unlock.Code, "unlock.code", false)
	return out
}

// NeedsCode reports whether editing the running prefs into edited needs an
// unlock code once the box is provisioned: any Locked change does, and so
// does a change of site.interval_minutes while the running sync_id is 0 (the
// seed: the interval is editable without a code "only if sync is enabled on
// this site"). LockedDigest leaves the interval out either way, so such an
// interval edit needs a window code, or a change-bound code for the
// unchanged digest.
func NeedsCode(running, edited *Prefs) bool {
	for _, c := range Changes(running, edited) {
		if c.Locked || c.Key == "site.interval_minutes" && running.Role() == RoleDisabled {
			return true
		}
	}
	return false
}

func sameStores(a, b []string) bool {
	return slices.Equal(sortedCopy(a), sortedCopy(b))
}

// rowChanges matches new rows to old ones with the same sync_id, identical
// rows first (so duplicate sync_ids, possible with sync_id = 0, still pair up
// the way the canonical form sorts them), and reports what differs.
func rowChanges(oldRows, newRows []Peer) []Change {
	olds := make([]encodedRow, len(oldRows))
	for i, r := range oldRows {
		olds[i] = encodeRow(i, r)
	}
	match := make([]int, len(newRows)) // new index -> old index, or -1
	used := make([]bool, len(oldRows))
	for i := range match {
		match[i] = -1
	}
	for pass := 0; pass < 2; pass++ {
		for i, r := range newRows {
			if match[i] >= 0 {
				continue
			}
			enc := encodeRow(i, r).enc
			for j, or := range olds {
				if !used[j] && or.id == r.SyncID && (pass == 1 || bytes.Equal(or.enc, enc)) {
					match[i], used[j] = j, true
					break
				}
			}
		}
	}
	var out []Change
	for i, r := range newRows {
		if match[i] < 0 {
			out = append(out, Change{Key: indexPath("sync_with", i), Note: fmt.Sprintf("added site %d", r.SyncID), Locked: true})
			continue
		}
		or := oldRows[match[i]]
		field := func(changed bool, key string) {
			if changed {
				out = append(out, Change{Key: rowKey(i, key), Locked: true})
			}
		}
		field(or.User != r.User, "user")
		field(or.PasswordSHA256 != r.PasswordSHA256, "password_sha256")
		field(or.PasswordHash != r.PasswordHash, "password_hash")
		field(or.URL != r.URL, "url")
		field(!sameStores(or.Stores, r.Stores), "stores")
		field(or.HardwareID != r.HardwareID, "hardware_id")
	}
	for j := range oldRows {
		if !used[j] {
			out = append(out, Change{Key: indexPath("sync_with", j), Note: fmt.Sprintf("removed site %d", oldRows[j].SyncID), Locked: true})
		}
	}
	return out
}
