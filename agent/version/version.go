// Package version holds the build's version, set by the Makefile's -ldflags.
package version

// Version is the release, e.g. "v1.2.0", or "dev" for a local build.
var Version = "dev"
