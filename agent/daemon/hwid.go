package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"syncagent/hw"
	"syncagent/ops"
)

// HardwareIDFile is the name, inside the unit's RuntimeDirectory, of the
// hardware ID that `syncagent hwid --write` leaves there as root
// (ExecStartPre=+ in packaging/syncagent.service). The DMI serials and product
// UUID are readable by root only; the agent runs as User=syncagent and would
// otherwise fall through to a weaker tier and present another ID than the one
// `syncagent hwid` shows a technician.
const HardwareIDFile = "hardware-id"

// maxHardwareIDFile bounds the read: the file holds one UUID-formatted line.
const maxHardwareIDFile = 256

// hardwareID returns the ID the root pre-start step wrote to
// $RUNTIME_DIRECTORY/hardware-id, and probes the hardware itself (hw.ID) when
// there is no such directory or file, or the file is empty.
func hardwareID(getenv func(string) string, probe func() (string, error)) func() (string, error) {
	return func() (string, error) {
		dir, _, _ := strings.Cut(getenv("RUNTIME_DIRECTORY"), ":")
		if dir == "" {
			return probe()
		}
		path := filepath.Join(dir, HardwareIDFile)
		id, err := readHardwareID(path)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && id == "") {
			return probe()
		}
		return id, err
	}
}

// readHardwareID reads the file: empty is "" with no error; anything but one
// short printable token is an error, so a damaged file never becomes the ID a
// primary pins. It is read as a regular file of bounded size: a FIFO or a
// device there is refused, not waited on.
func readHardwareID(path string) (string, error) {
	b, _, err := ops.ReadRegular(path, maxHardwareIDFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", err
	case errors.Is(err, ops.ErrTooLarge):
		return "", fmt.Errorf("%s is longer than a hardware ID (%d bytes at most); remove it and restart (`syncagent hwid --write` rewrites it)", path, maxHardwareIDFile)
	case err != nil:
		return "", fmt.Errorf("cannot read the hardware ID file: %w", err)
	}
	id := strings.TrimSpace(string(b))
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return "", fmt.Errorf("%s does not hold a hardware ID (found %q); remove it and restart (`syncagent hwid --write` rewrites it)", path, id)
		}
	}
	return id, nil
}

// defaultHardwareID is Options.HardwareID when the caller leaves it nil.
func defaultHardwareID() func() (string, error) { return hardwareID(os.Getenv, hw.ID) }

// OfflineHardwareID is the ID the installed agent presents, for commands
// run while it is stopped: the file the unit's root pre-start step wrote
// ($RUNTIME_DIRECTORY, else /run/syncagent), else a probe of the hardware
// (as root, to see what the agent sees).
func OfflineHardwareID() (string, error) {
	getenv := func(k string) string {
		if v := os.Getenv(k); v != "" || k != "RUNTIME_DIRECTORY" {
			return v
		}
		return "/run/syncagent"
	}
	return hardwareID(getenv, hw.ID)()
}
