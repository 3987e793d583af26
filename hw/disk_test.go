package hw

import (
	"slices"
	"testing"

	"github.com/jaypipes/ghw"
)

// Protects finding the root filesystem's device from the mount table, the
// only way the disk tier can ignore a disk added later.
func TestProber_RootDevice(t *testing.T) {
	tests := []struct {
		name, mounts, cmdline, want string
	}{
		{"partition", "/dev/sda2 / ext4 rw 0 0\n/dev/sda1 /boot vfat rw 0 0", "", "sda2"},
		{"last mount on / wins", "/dev/sda2 / ext4 rw 0 0\n/dev/nvme0n1p3 / ext4 rw 0 0", "", "nvme0n1p3"},
		{"whole disk", "/dev/vda / ext4 rw 0 0", "", "vda"},
		{"md", "/dev/md0 / ext4 rw 0 0", "", "md0"},
		{"device-mapper", "/dev/mapper/vg0-root / ext4 rw 0 0", "", "dm-1"},
		{"unknown device-mapper name", "/dev/mapper/other / ext4 rw 0 0", "", ""},
		{"/dev/root from cmdline", "/dev/root / ext4 rw 0 0", "console=tty1 root=/dev/mmcblk0p2 rootwait", "mmcblk0p2"},
		{"/dev/root by PARTUUID", "/dev/root / ext4 rw 0 0", "root=PARTUUID=6c586e13-02 rootwait", ""},
		{"overlay", "overlay / overlay rw 0 0", "", ""},
		{"by-uuid link", "/dev/disk/by-uuid/1234 / ext4 rw 0 0", "", ""},
		{"no mount table", "", "", ""},
		{"junk lines", "\n\nnonsense\n/dev/sdb1 / ext4 rw 0 0", "", "sdb1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.mounts != "" {
				writeFile(t, root, "proc/self/mounts", tt.mounts)
			}
			if tt.cmdline != "" {
				writeFile(t, root, "proc/cmdline", tt.cmdline)
			}
			writeFile(t, root, "sys/block/dm-0/dm/name", "vg0-swap")
			writeFile(t, root, "sys/block/dm-1/dm/name", "vg0-root")
			if got := newProber(root).rootDevice(); got != tt.want {
				t.Errorf("rootDevice() = %q, want %q", got, tt.want)
			}
		})
	}
}

// Protects tracing a stacked device (LUKS on LVM on md RAID1 over two
// partitions) down to the disks that hold it.
func TestProber_DisksHolding(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "sys/block/dm-1/slaves/dm-0", "")
	writeFile(t, root, "sys/block/dm-0/slaves/md0", "")
	writeFile(t, root, "sys/block/md0/slaves/sda2", "")
	writeFile(t, root, "sys/block/md0/slaves/sdb2", "")
	disks := []*ghw.Disk{
		{Name: "sda", Partitions: []*ghw.Partition{{Name: "sda1"}, {Name: "sda2"}}},
		{Name: "sdb", Partitions: []*ghw.Partition{{Name: "sdb1"}, {Name: "sdb2"}}},
		{Name: "sdc", Partitions: []*ghw.Partition{{Name: "sdc1"}}},
		{Name: "dm-0"}, {Name: "dm-1"}, {Name: "md0"},
	}
	p := newProber(root)
	tests := []struct {
		name string
		want []string
	}{
		{"dm-1", []string{"sda", "sdb"}},
		{"sdc1", []string{"sdc"}},
		{"sdc", []string{"sdc"}},
		{"sdz", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := p.disksHolding(tt.name, disks); !slices.Equal(got, tt.want) {
			t.Errorf("disksHolding(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
