#!/bin/sh
# PID 1 of the systemd end-to-end test's namespaces, before it becomes systemd.
#
#   unshare --fork --kill-child --pid --mount --mount-proc --uts --ipc --net \
#           --cgroup --propagation private  boot.sh WORKDIR
#
# It is run by systemd_test.go, never by hand. It builds a throwaway view of
# the machine and then execs the real /lib/systemd/systemd as PID 1 into it:
#
#   - every mount below is made in this private mount namespace and vanishes
#     with it; nothing propagates to the host (--propagation private);
#   - /tmp, /var/tmp, /run, /root and /home are fresh tmpfs mounts, made
#     BEFORE systemd starts, so nothing in here can empty the host's /tmp;
#   - /etc, /usr, /var/lib, /var/log, /var/cache and /var/spool are overlays
#     whose writes land in WORKDIR/upper (the package, users, unit state);
#   - the rest of / is read-only, and so are /sys, /proc/sys and
#     /proc/sysrq-trigger, so systemd cannot tune the host's kernel;
#   - /dev is a tmpfs with a few device nodes, /sys/fs/cgroup the cgroup2
#     subtree the test made for this run (--cgroup makes it the root).
#
# WORKDIR must not be under one of the overlaid directories (overlayfs refuses
# an upper dir inside its lower dir); the test uses /var/tmp/syncagent-e2e-*.
set -eu

work=$1
[ "$$" = 1 ] || { echo "boot.sh: must run as PID 1 of a new PID namespace" >&2; exit 1; }
[ -d "$work/upper" ] || { echo "boot.sh: $work/upper missing" >&2; exit 1; }

# Overlays: the host's directory below, this run's writes above.
for d in etc usr var/lib var/log var/cache var/spool; do
	[ -d "/$d" ] || continue
	mkdir -p "$work/upper/$d" "$work/ovl-work/$d"
	mount -t overlay "overlay-$(echo "$d" | tr / -)" \
		-o "lowerdir=/$d,upperdir=$work/upper/$d,workdir=$work/ovl-work/$d" "/$d"
done

# A minimal /dev of our own: the host's devtmpfs is shared with the host.
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs /dev
mknod -m 0666 /dev/null c 1 3
mknod -m 0666 /dev/zero c 1 5
mknod -m 0666 /dev/full c 1 7
mknod -m 0666 /dev/random c 1 8
mknod -m 0666 /dev/urandom c 1 9
mknod -m 0666 /dev/tty c 5 0
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
# systemd writes boot status to /dev/console: let it land in a file.
: >"$work/console.log"
touch /dev/console
mount --bind "$work/console.log" /dev/console

# Fresh, private, empty: what systemd-tmpfiles and PrivateTmp= would act on.
# WORKDIR, under /var/tmp, is hidden from here on.
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs /var/tmp
mount -t tmpfs -o mode=0755,nosuid,nodev,size=256m tmpfs /run
mount -t tmpfs -o mode=0700,nosuid,nodev,size=16m tmpfs /root
mount -t tmpfs -o mode=0755,nosuid,nodev,size=16m tmpfs /home

# Read-only kernel interfaces (as systemd-nspawn does), then a writable
# cgroup2 tree: the subtree this run was put in, seen as the root.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
	mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
	mount -o remount,bind,ro /proc/sysrq-trigger
fi

# Everything else on / is read-only from here on.
mount -o remount,bind,ro /

ip link set lo up 2>/dev/null || true
hostname syncagent-e2e

# container= tells systemd it is in a container: no kernel modules, no
# hardware clock, no host-wide sysctl, and `systemctl exit` ends it.
# Its own log goes to the journal once journald runs (so `journalctl -u`
# shows watchdog kills and restarts); there is no /dev/kmsg in here to fall
# back to, so nothing reaches the host's kernel log.
exec env -i container=syncagent-e2e PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	/lib/systemd/systemd --system --unit=syncagent-e2e.target \
	--log-target=journal-or-kmsg --show-status=no --log-color=no
