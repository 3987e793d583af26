#!/bin/sh
# Installs what `make systemd-e2e` needs when it is missing (Debian/Ubuntu,
# as root): the real systemd, unshare/nsenter, ip, dpkg and the tools the
# package's maintainer scripts call. Prints what it installs; quiet otherwise.
set -eu
need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have /lib/systemd/systemd || need="$need systemd"
have unshare || need="$need util-linux"
have nsenter || need="$need util-linux"
have ip || need="$need iproute2"
have dpkg || need="$need dpkg"
have adduser || need="$need adduser"
have deb-systemd-helper || need="$need init-system-helpers"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! have apt-get; then
	echo "systemd-e2e: missing:$need (install them, or run as root on Debian)" >&2
	exit 0 # the test then skips and says why
fi
echo "systemd-e2e: installing$need"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null
