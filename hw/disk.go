package hw

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/ghw/pkg/block"
)

// disk is tier 3: the serial of the disk holding the root filesystem.
//
// Disk rule: only disks that are not removable, not on USB, not virtual
// (loop, dm, md, zram) and not optical or floppy, with a real serial, are
// eligible. If the root filesystem lives on eligible disks (directly, or
// through device-mapper/LVM/LUKS/md), only those count: a disk added later
// does not hold root. If root cannot be traced to an eligible disk (overlay
// root, /dev/root without root=/dev/…), the one eligible disk first in bus
// order (udev's ID_PATH, then name) counts: a disk added later usually goes
// into a later port or slot.
func (p *prober) disk() ([]identifier, error) {
	info, err := ghw.Block(p.ghwOpts...)
	if err != nil {
		return nil, fmt.Errorf("cannot list disks: %w", err)
	}
	var eligible []*ghw.Disk
	for _, d := range info.Disks {
		switch d.DriveType {
		case ghw.DriveTypeFDD, ghw.DriveTypeODD, block.DriveTypeVirtual:
			continue
		}
		device := p.linkTarget("sys/block/" + d.Name)
		if d.IsRemovable || onUSB(device) || isVirtualDevice(device) || isPlaceholder(d.SerialNumber) {
			continue
		}
		eligible = append(eligible, d)
	}
	if len(eligible) == 0 {
		return nil, nil
	}

	var ids []identifier
	holders := p.disksHolding(p.rootDevice(), info.Disks)
	for _, d := range eligible {
		if slices.Contains(holders, d.Name) {
			ids = append(ids, identifier{"disk", normalize(d.SerialNumber)})
		}
	}
	if len(ids) > 0 {
		return ids, nil
	}
	first := slices.MinFunc(eligible, func(a, b *ghw.Disk) int {
		aKnown, bKnown := !isPlaceholder(a.BusPath), !isPlaceholder(b.BusPath)
		if aKnown != bKnown {
			if aKnown {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.BusPath, b.BusPath), cmp.Compare(a.Name, b.Name))
	})
	return []identifier{{"disk", normalize(first.SerialNumber)}}, nil
}

// rootDevice returns the kernel name ("sda2", "dm-0", "mmcblk0p2") of the
// block device mounted on /, or "" if / is not on a block device we can
// name.
func (p *prober) rootDevice() string {
	var source string
	for line := range strings.Lines(p.readFile("proc/self/mounts")) {
		// Later lines mount over earlier ones: the last "/" wins.
		if f := strings.Fields(line); len(f) >= 2 && f[1] == "/" {
			source = f[0]
		}
	}
	if source == "/dev/root" {
		// The kernel's own name for root= when it mounted root itself.
		source = ""
		for arg := range strings.FieldsSeq(p.readFile("proc/cmdline")) {
			if v, ok := strings.CutPrefix(arg, "root="); ok {
				source = v
			}
		}
	}
	name, ok := strings.CutPrefix(source, "/dev/")
	if !ok {
		return "" // overlay, tmpfs, nfs, PARTUUID=…
	}
	if dmName, ok := strings.CutPrefix(name, "mapper/"); ok {
		return p.deviceMapperDevice(dmName)
	}
	if strings.Contains(name, "/") {
		return "" // /dev/disk/by-…/: mounts lists kernel names, not links
	}
	return name
}

// deviceMapperDevice returns the dm-N whose dm/name is dmName, or "".
func (p *prober) deviceMapperDevice(dmName string) string {
	entries, _ := os.ReadDir(p.path("sys/block"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "dm-") &&
			strings.TrimSpace(p.readFile("sys/block/"+e.Name()+"/dm/name")) == dmName {
			return e.Name()
		}
	}
	return ""
}

// disksHolding returns the names of the disks that name (a disk, a partition,
// or a dm/md device stacked on them) is stored on.
func (p *prober) disksHolding(name string, disks []*ghw.Disk) []string {
	var held []string
	var walk func(name string, depth int)
	walk = func(name string, depth int) {
		if name == "" || depth > 8 {
			return // bounded: sysfs is a tree, but a fixture need not be
		}
		if slaves, _ := os.ReadDir(p.path(path.Join("sys/block", name, "slaves"))); len(slaves) > 0 {
			for _, s := range slaves {
				walk(s.Name(), depth+1)
			}
			return
		}
		for _, d := range disks {
			if d.Name == name || slices.ContainsFunc(d.Partitions, func(pt *ghw.Partition) bool { return pt.Name == name }) {
				held = append(held, d.Name)
			}
		}
	}
	walk(name, 0)
	return held
}
