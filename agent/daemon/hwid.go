package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"syncagent/hw"
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
// primary pins.
func readHardwareID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHardwareIDFile+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the hardware ID file: %w", err)
	}
	if len(b) > maxHardwareIDFile {
		return "", fmt.Errorf("%s is longer than a hardware ID (%d bytes at most); remove it and restart (`syncagent hwid --write` rewrites it)", path, maxHardwareIDFile)
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
