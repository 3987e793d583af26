//go:build !faultinject

package daemon

// faultPoint is a no-op in release builds; see fault_inject.go.
func faultPoint(string) {}
