package ops

// Exit codes of `syncagent run`. packaging/syncagent.service maps them, so
// only systemd decides about restarts (the agent never re-executes itself):
//
//	SuccessExitStatus=4 RestartForceExitStatus=4 RestartPreventExitStatus=3
//
// TestUnit_mapsExitCodes keeps the unit file and these constants in step.
const (
	// ExitOK: a clean stop (SIGTERM, SIGINT, or a one-shot command that
	// succeeded).
	ExitOK = 0
	// ExitError: a failure at run time; Restart=on-failure restarts the agent.
	ExitError = 1
	// ExitUsage: a bad command line (unknown flag, missing argument).
	ExitUsage = 2
	// ExitConfig: the prefs file is missing or invalid at start. systemd does
	// not restart (RestartPreventExitStatus=3): a restart loop cannot fix a
	// file, and the unit's failed state plus the journal line tell the
	// technician what to do.
	ExitConfig = 3
	// ExitRestart: the agent applied a change that cannot take effect live and
	// asks systemd to start it again (RestartForceExitStatus=4). It counts as
	// a success (SuccessExitStatus=4), so the unit does not show as failed.
	ExitRestart = 4
)

// Exit codes of `syncagent status` beyond 0 (healthy) and 1 (failed to
// ask): a monitoring script can tell what is wrong without parsing. When
// several apply, the first in this list wins.
const (
	// StatusNotRunning: no agent answers on the control socket.
	StatusNotRunning = 5
	// StatusSyncFailing: the last sync cycle failed (the link is down, or
	// the primary refused).
	StatusSyncFailing = 6
	// StatusPrefsNotApplied: the prefs file on disk is not what runs (it was
	// rejected, or its change needs a restart).
	StatusPrefsNotApplied = 7
	// StatusStarting: the agent is starting (opening its datafile); ask
	// again in a moment.
	StatusStarting = 8
)
