// Package ops connects the agent to its operating system: systemd notify and
// watchdog, file watching and signals. It is the only package that imports
// go-systemd and fsnotify.
package ops
