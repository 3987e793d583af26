#!/bin/sh
# prerm of the syncagent .deb: called as `prerm remove`, `prerm upgrade
# NEW-VERSION`, `prerm deconfigure ...` or `prerm failed-upgrade OLD-VERSION`.
#
# On remove it stops the agent: SIGTERM, which it answers by finishing the
# current batch and flushing its queue (TimeoutStopSec= in the unit). On an
# upgrade the agent keeps running; postinst restarts it on the new binary.
# It deletes nothing.
set -e

unit=syncagent.service

if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	deb-systemd-invoke stop "$unit" >/dev/null || true
fi

exit 0
