// Package e2e holds end-to-end tests: a real primary and real satellites,
// each with its own BuntDB file and HTTP server on loopback.
package e2e
