// Package e2e holds the end-to-end test of the installed package under the
// real systemd (`make systemd-e2e`): it boots /lib/systemd/systemd as PID 1 of
// new PID, mount, UTS, IPC, network and cgroup namespaces, over private tmpfs
// and overlay mounts so the host is left as it was, installs the .deb with
// dpkg, and checks start, STATUS, reload, the watchdog and a clean stop.
//
// It runs only with SYNCAGENT_SYSTEMD_E2E=1, as root, with the .deb named by
// SYNCAGENT_E2E_DEB; plain `go test ./...` skips it at once. It imports
// nothing from the module: it drives the installed binary.
package e2e
