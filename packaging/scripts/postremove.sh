#!/bin/sh
# postrm of the syncagent .deb: called as `postrm remove`, `postrm purge`,
# `postrm upgrade NEW-VERSION`, `postrm failed-upgrade OLD-VERSION`,
# `postrm abort-install`, `postrm abort-upgrade OLD-VERSION` or `postrm
# disappear ...`.
#
# Nothing here deletes records or settings, not even on purge:
# /var/lib/syncagent can hold records never sent to the primary, and
# /etc/syncagent the box's prefs and keys (dpkg itself removes the unchanged
# conffiles on purge). Purge removes the syncagent user and group, after
# handing the state directory to root so that a later user given the same
# UID cannot read it; reinstalling gives it back to the new syncagent user
# (systemd's StateDirectory= does that at start).
set -e

unit=syncagent.service
user=syncagent
state=/var/lib/syncagent

case "$1" in
remove)
	# Masked, so nothing starts a unit whose binary is gone; the enable state
	# is kept for a reinstall, whose postinst removes this mask.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper mask "$unit" >/dev/null || true
	fi
	;;
purge)
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge "$unit" >/dev/null || true
		deb-systemd-helper unmask "$unit" >/dev/null || true
	fi
	if [ -d "$state" ] && [ ! -L "$state" ]; then
		chown root:root "$state"
		chmod 0700 "$state"
		echo "syncagent: kept $state (records and lock state); remove it by hand if nothing in it is needed" >&2
	fi
	if getent passwd "$user" >/dev/null 2>&1; then
		if command -v deluser >/dev/null 2>&1; then
			deluser --system --quiet "$user" >/dev/null 2>&1 || true
		else
			userdel "$user" || true
		fi
	fi
	if getent group "$user" >/dev/null 2>&1; then
		if command -v delgroup >/dev/null 2>&1; then
			delgroup --system --quiet --only-if-empty "$user" || true
		else
			groupdel "$user" || true
		fi
	fi
	;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi

exit 0
