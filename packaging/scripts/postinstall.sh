#!/bin/sh
# postinst of the syncagent .deb: called as `postinst configure [OLD-VERSION]`
# (OLD-VERSION empty on a fresh install) or `postinst abort-*`.
#
# It creates the syncagent system user and enables the unit. It deletes
# nothing. A fresh install does not start the agent: the first prefs file the
# agent runs with becomes the box's locked provisioning, so the technician
# edits /etc/syncagent/prefs.toml first and then runs `systemctl start
# syncagent` (or the box starts it at its next boot). An upgrade restarts a
# running agent on the new binary.
set -e

unit=syncagent.service
user=syncagent
prefs=/etc/syncagent/prefs.toml

case "$1" in
configure | abort-upgrade | abort-remove | abort-deconfigure) ;;
*) exit 0 ;;
esac

# The system user and group the unit runs as (User=, Group=). Its home is the
# state directory, which systemd creates (StateDirectory=); no login. The
# package depends on adduser.
if ! getent group "$user" >/dev/null 2>&1; then
	addgroup --system --quiet "$user"
fi
if ! getent passwd "$user" >/dev/null 2>&1; then
	adduser --system --quiet --ingroup "$user" --no-create-home \
		--home /var/lib/syncagent --shell /usr/sbin/nologin \
		--gecos "syncagent record synchronisation" "$user"
fi

# The prefs hold a password digest: readable by the agent's group, not by
# everyone. Only on a fresh install, so an administrator's choice stays.
if [ "$1" = configure ] && [ -z "$2" ] && [ -f "$prefs" ] && [ ! -L "$prefs" ]; then
	chgrp "$user" "$prefs"
	chmod 0640 "$prefs"
fi

# Enable the unit. deb-systemd-helper (init-system-helpers, a dependency)
# remembers an administrator's `systemctl disable` across upgrades, and works
# in a chroot or image build without systemd. was-enabled is true on a fresh
# install.
deb-systemd-helper unmask "$unit" >/dev/null || true
if deb-systemd-helper --quiet was-enabled "$unit"; then
	deb-systemd-helper enable "$unit" >/dev/null || true
else
	deb-systemd-helper update-state "$unit" >/dev/null || true
fi

# Only when systemd runs (not in an image build or chroot): load the new unit
# file and restart the agent if it was running (an upgrade). try-restart never
# starts a stopped agent.
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
	if [ -n "$2" ]; then
		deb-systemd-invoke try-restart "$unit" >/dev/null || true
	fi
fi

exit 0
