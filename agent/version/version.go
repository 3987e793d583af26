// Package version holds the build's version: Release, the product release
// peers see on the wire, and Version, the exact build set by the Makefile's
// -ldflags for logs and `syncagent version`.
package version

// Release is the product release, sent in the sync API's app-version header
// (peers expect a version such as "2.20.0", not a commit). Raise it with
// every release.
const Release = "0.3.0"

// Version is the exact build, e.g. "v1.2.0-3-gabcdef", or "dev" for a local build.
var Version = "dev"
