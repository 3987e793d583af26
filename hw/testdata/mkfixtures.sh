#!/bin/sh
# Rebuilds the fixture trees the hw tests probe. Each tree is the part of a
# machine's /sys, /proc, /run/udev and /etc that ghw and hw read; paths and
# symlinks mirror a real Linux box. Run from hw/testdata; commit the result.
set -eu
cd "$(dirname "$0")"

T= # the tree being built

f() { mkdir -p "$T/$(dirname "$1")"; printf '%s\n' "$2" >"$T/$1"; }
l() { mkdir -p "$T/$(dirname "$1")"; ln -sfn "$2" "$T/$1"; }
dmi() { while [ $# -gt 1 ]; do f "sys/class/dmi/id/$1" "$2"; shift 2; done; }

# nic NAME DEVICE-PATH MAC: a NIC backed by a device under /sys/devices.
nic() {
	d="sys/devices/$2/net/$1"
	f "$d/address" "$3"
	f "$d/addr_assign_type" 0
	l "$d/device" "../../../$(basename "$2")"
	l "sys/class/net/$1" "../../devices/$2/net/$1"
}
# vnic NAME MAC: a software NIC (bridge, tunnel) with no device behind it.
vnic() {
	f "sys/devices/virtual/net/$1/address" "$2"
	f "sys/devices/virtual/net/$1/addr_assign_type" 0
	l "sys/class/net/$1" "../../devices/virtual/net/$1"
}
# disk NAME DEVICE-PATH MAJ:MIN SERIAL ID_PATH [PARTITION-SUFFIX...]
disk() {
	name=$1 dev=$2 majmin=$3 serial=$4 idpath=$5
	shift 5
	d="sys/devices/$dev/block/$name"
	f "$d/dev" "$majmin"
	f "$d/removable" 0
	l "sys/block/$name" "../devices/$dev/block/$name"
	f "run/udev/data/b$majmin" "E:ID_SERIAL_SHORT=$serial
E:ID_PATH=$idpath"
	n=1
	for part in "$@"; do
		f "$d/$name$part/dev" "${majmin%:*}:$((${majmin#*:} + n))"
		f "$d/$name$part/partition" "$n"
		n=$((n + 1))
	done
}
mounts() { f proc/self/mounts "$1
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0"; }
tree() { T=$1; rm -rf "$T"; mkdir -p "$T"; }

# (a) A PC with DMI; pc-dmi-extra adds a USB NIC and a second disk.
pc_dmi() {
	dmi sys_vendor "Dell Inc." product_name "OptiPlex 3080" \
		product_uuid 4c4c4544-0042-3510-8052-b4c04f4d3732 product_serial 4MR5BP2 \
		board_serial /4MR5BP2/CNFCW0097T00AB/ chassis_serial 4MR5BP2
	nic eno1 pci0000:00/0000:00:1f.6 d8:9e:f3:12:34:56
	disk nvme0n1 pci0000:00/0000:00:1d.0/0000:02:00.0/nvme/nvme0 259:0 S4EWNX0R123456 pci-0000:02:00.0-nvme-1 p1 p2
	mounts "/dev/nvme0n1p2 / ext4 rw,relatime 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime 0 0"
	f etc/machine-id 4f0c2b1e9a8d4c7b8e6f5a4b3c2d1e0f
}
tree pc-dmi && pc_dmi
tree pc-dmi-extra && pc_dmi
nic enx00e04c360102 pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0 00:e0:4c:36:01:02
disk sda pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0 8:0 WD-WX12A3456789 pci-0000:00:17.0-ata-1 1

# (b) ARM boards without DMI: one with a device-tree serial; arm-nic has none
# and an on-board NIC; arm-nic-usb adds a USB NIC and a bridge to it.
tree arm-dt
f sys/firmware/devicetree/base/model "Raspberry Pi 4 Model B Rev 1.4"
f sys/firmware/devicetree/base/serial-number 10000000a1b2c3d4
l proc/device-tree ../sys/firmware/devicetree/base
nic eth0 platform/scb/fd580000.ethernet dc:a6:32:01:02:03
disk mmcblk0 platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa 179:0 0x1234abcd platform-fe340000.mmc p1 p2
mounts "/dev/mmcblk0p2 / ext4 rw,noatime 0 0"

arm_nic() {
	f sys/firmware/devicetree/base/model "Generic RK3399 board"
	l proc/device-tree ../sys/firmware/devicetree/base
	nic eth0 platform/ff3f0000.ethernet 00:1e:06:aa:bb:cc
	nic wlan0 platform/fe310000.mmc/mmc_host/mmc1/mmc1:0001/mmc1:0001:1 00:0a:f5:11:22:33
	f sys/devices/platform/fe310000.mmc/mmc_host/mmc1/mmc1:0001/mmc1:0001:1/ieee80211/phy0/name phy0
	l sys/devices/platform/fe310000.mmc/mmc_host/mmc1/mmc1:0001/mmc1:0001:1/net/wlan0/phy80211 ../../ieee80211/phy0
	disk mmcblk0 platform/fe330000.mmc/mmc_host/mmc0/mmc0:0001 179:0 0x5678cdef platform-fe330000.mmc p1
	mounts "/dev/mmcblk0p1 / ext4 rw,noatime 0 0"
	f etc/machine-id 0d1c2b3a49586776a5b4c3d2e1f00f1e
}
tree arm-nic && arm_nic
tree arm-nic-usb && arm_nic
nic eth1 platform/fe380000.usb/usb1/1-1/1-1:1.0 00:0e:c6:01:02:03
vnic br0 00:0e:c6:00:00:01

# (c) VMs with only a locally administered MAC: vm-lamac falls to its root
# disk (vm-lamac-disk2 adds an NVMe disk first in bus order, vm-lvm has root
# on LVM on its second disk), vm-machineid has only QEMU's placeholder serial.
vm_lamac() {
	dmi sys_vendor QEMU product_name "Standard PC (Q35 + ICH9, 2009)" \
		product_serial "" board_serial "" chassis_serial "Not Specified"
	nic enp1s0 pci0000:00/0000:00:02.0/0000:01:00.0/virtio0 52:54:00:12:34:56
	vnic docker0 02:42:ac:11:00:01
	f etc/machine-id 7e6d5c4b3a2918070f1e2d3c4b5a6978
}
tree vm-lamac && vm_lamac
disk vda pci0000:00/0000:00:02.3/0000:04:00.0/virtio2 252:0 vm-7f3a-root pci-0000:04:00.0 1
mounts "/dev/vda1 / ext4 rw,relatime 0 0"
tree vm-lamac-disk2 && vm_lamac
disk vda pci0000:00/0000:00:02.3/0000:04:00.0/virtio2 252:0 vm-7f3a-root pci-0000:04:00.0 1
disk nvme0n1 pci0000:00/0000:00:02.1/0000:02:00.0/nvme/nvme0 259:0 nvme-extra-01 pci-0000:02:00.0-nvme-1 p1
mounts "/dev/vda1 / ext4 rw,relatime 0 0
/dev/nvme0n1p1 /data ext4 rw,relatime 0 0"

tree vm-lvm && vm_lamac
disk vda pci0000:00/0000:00:02.3/0000:04:00.0/virtio2 252:0 lvm-boot-disk pci-0000:04:00.0 1
disk vdb pci0000:00/0000:00:02.4/0000:05:00.0/virtio3 252:16 lvm-root-disk pci-0000:05:00.0 1
f sys/devices/virtual/block/dm-0/dev 253:0
f sys/devices/virtual/block/dm-0/dm/name vg0-root
f sys/devices/virtual/block/dm-0/slaves/vdb1 ""
l sys/block/dm-0 ../devices/virtual/block/dm-0
mounts "/dev/mapper/vg0-root / ext4 rw,relatime 0 0
/dev/vda1 /boot ext4 rw,relatime 0 0"

tree vm-machineid
nic enp0s2 pci0000:00/0000:00:02.0 52:54:00:ab:cd:ef
disk sda pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0 8:0 QM00001 pci-0000:00:1f.2-ata-1 1
mounts "/dev/sda1 / ext4 rw,relatime 0 0"
f etc/machine-id 9a8b7c6d5e4f30211a2b3c4d5e6f7081

# (d) A PC whose DMI holds only placeholders falls through to its NIC.
tree pc-placeholder
dmi sys_vendor "To be filled by O.E.M." product_name "To be filled by O.E.M." \
	product_uuid 03000200-0400-0500-0006-000700080009 product_serial "To be filled by O.E.M." \
	board_serial "Default string" chassis_serial "  DEFAULT STRING  "
nic enp2s0 pci0000:00/0000:00:1c.0/0000:02:00.0 00:e0:4c:68:12:34
disk sda pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0 8:0 S3Z9NB0K654321 pci-0000:00:17.0-ata-1 1
mounts "/dev/sda1 / ext4 rw,relatime 0 0"
f etc/machine-id 1f2e3d4c5b6a79881f2e3d4c5b6a7988
