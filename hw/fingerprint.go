package hw

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jaypipes/ghw"
)

// Fingerprint is this box's hardware identity as it may leave the box.
type Fingerprint struct {
	// ID is the hardware ID: a UUID-formatted (8-4-4-4-12 lowercase hex)
	// SHA-256 over an app-specific domain tag and the chosen identifiers.
	// Only this hash leaves the box.
	ID string
	// Sources names the kinds of identifier that fed ID, e.g.
	// "dmi.product_uuid" or "nic"; never their values.
	Sources []string
}

// domainTag makes our hash of a serial number differ from anyone else's hash
// of the same serial. Changing it changes every box's ID: never do that.
const domainTag = "syncagent hardware-id v1"

// probeTimeout bounds a whole probe: a sysfs attribute whose driver blocks
// must not keep the daemon from starting (DESIGN.md invariant 4).
var probeTimeout = 20 * time.Second

// tiers are tried strongest first; the first one that yields any identifier
// is used alone, so hardware of a weaker tier coming or going never changes
// the ID.
var tiers = []struct {
	lookedFor string
	probe     func(*prober) ([]identifier, error)
}{
	{"DMI product UUID and product/board/chassis serials, device-tree serial-number", (*prober).firmware},
	{"the MAC of an on-board NIC (universally administered, not virtual, not USB)", (*prober).nic},
	{"the serial of a non-removable, non-USB disk", (*prober).disk},
	{"/etc/machine-id", (*prober).machineID},
}

// ID returns this box's hardware ID: Probe("/").ID.
func ID() (string, error) {
	fp, err := Probe("/")
	if err != nil {
		return "", err
	}
	return fp.ID, nil
}

// Probe fingerprints the machine whose filesystem is mounted at root ("/" in
// production, a fixture tree in tests). Unreadable or missing files only
// make a tier come up empty; Probe fails only when no tier yields anything,
// or when the hardware does not answer within a bound.
//
// DMI serials and the product UUID are readable by root only: a probe by an
// unprivileged user falls through to a weaker tier and yields another ID, so
// the daemon and `syncagent hwid` must run with the same privileges.
func Probe(root string) (Fingerprint, error) {
	return probeWithin(root, probeTimeout)
}

func probeWithin(root string, limit time.Duration) (Fingerprint, error) {
	type result struct {
		fp  Fingerprint
		err error
	}
	// Buffered, so a probe that answers after the deadline does not leak
	// its goroutine forever, only until the stuck read returns.
	done := make(chan result, 1)
	go func() {
		fp, err := probe(root)
		done <- result{fp, err}
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.fp, r.err
	case <-timer.C:
		return Fingerprint{}, fmt.Errorf("cannot probe hardware under %s: no answer within %v (a sysfs read is stuck)", root, limit)
	}
}

func probe(root string) (Fingerprint, error) {
	if root == "" {
		root = "/"
	}
	if fi, err := os.Stat(root); err != nil {
		return Fingerprint{}, fmt.Errorf("cannot probe hardware: %w", err)
	} else if !fi.IsDir() {
		return Fingerprint{}, fmt.Errorf("cannot probe hardware: %s is not a directory", root)
	}
	p := newProber(root)
	var lookedFor []string
	for _, t := range tiers {
		ids, err := t.probe(p)
		if err != nil {
			return Fingerprint{}, err
		}
		if len(ids) > 0 {
			return fingerprintOf(ids), nil
		}
		lookedFor = append(lookedFor, t.lookedFor)
	}
	return Fingerprint{}, fmt.Errorf("no hardware identifier found under %s: looked for %s (DMI serials need root)",
		root, strings.Join(lookedFor, "; "))
}

// identifier is one raw value and the kind it is. It never leaves the
// package: only fingerprintOf's hash of it does.
type identifier struct {
	source string // e.g. "dmi.product_serial"
	value  string // normalized
}

// fingerprintOf hashes ids in a canonical order, so the order in which sysfs
// lists devices never matters. Each field is length-prefixed, so no two
// different lists hash the same bytes.
func fingerprintOf(ids []identifier) Fingerprint {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b identifier) int {
		return cmp.Or(strings.Compare(a.source, b.source), strings.Compare(a.value, b.value))
	})
	sorted = slices.Compact(sorted)

	h := sha256.New()
	writeField := func(s string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		io.WriteString(h, s)
	}
	writeField(domainTag)
	for _, id := range sorted {
		writeField(id.source)
		writeField(id.value)
	}
	sum := h.Sum(nil)
	// Mark it an RFC 9562 version-8 (custom) UUID, so it is a valid UUID
	// for anyone who parses it.
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	x := hex.EncodeToString(sum[:16])

	// Sources keep the order the tier found them in, which reads best.
	var sources []string
	for _, id := range ids {
		if !slices.Contains(sources, id.source) {
			sources = append(sources, id.source)
		}
	}
	return Fingerprint{
		ID:      x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32],
		Sources: sources,
	}
}

// prober reads one machine's hardware, all of it under root.
type prober struct {
	root    string
	ghwOpts []any
}

func newProber(root string) *prober {
	return &prober{
		root: root,
		ghwOpts: []any{
			ghw.WithChroot(root),
			// ghw would run ethtool per NIC: slow, and it could hang.
			ghw.WithDisableTools(),
			ghw.WithDisableTopology(),
			// ghw warns on stderr about every unreadable file. A logger
			// of our own keeps the CLI's output clean without touching
			// ghw's global log level (WithDisableWarnings does that).
			ghw.WithLogger(slog.New(slog.DiscardHandler)),
		},
	}
}

// path returns rel (a slash-separated path without leading slash) under root.
func (p *prober) path(rel string) string {
	return filepath.Join(p.root, filepath.FromSlash(rel))
}

// maxFileSize bounds what we read ourselves; sysfs attributes are one page.
const maxFileSize = 1 << 20

// readFile returns the contents of rel, or "" if it cannot be read.
func (p *prober) readFile(rel string) string {
	f, err := os.Open(p.path(rel))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize))
	if err != nil {
		return ""
	}
	return string(b)
}

// linkTarget returns where the sysfs symlink rel points, or "" if it is not
// a symlink.
func (p *prober) linkTarget(rel string) string {
	dest, err := os.Readlink(p.path(rel))
	if err != nil {
		return ""
	}
	return filepath.ToSlash(dest)
}

func (p *prober) exists(rel string) bool {
	_, err := os.Lstat(p.path(rel))
	return err == nil
}

// onUSB reports whether a sysfs device path goes through a USB bus
// (".../usb2/2-1/2-1:1.0/net/enx…").
func onUSB(devicePath string) bool {
	for part := range strings.SplitSeq(devicePath, "/") {
		if strings.HasPrefix(part, "usb") {
			return true
		}
	}
	return false
}

// isVirtualDevice reports whether a sysfs device path has no hardware behind
// it (bridges, tunnels, loop, device-mapper, md, zram).
func isVirtualDevice(devicePath string) bool {
	return strings.Contains("/"+devicePath+"/", "/devices/virtual/")
}
