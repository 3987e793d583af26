//go:build !unix

package queue

import "os"

// lockFile is a no-op where flock does not exist.
func lockFile(path string) (*os.File, error) { return nil, nil }
