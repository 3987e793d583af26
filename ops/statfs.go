package ops

import "syscall"

// FreeBytes is the space an unprivileged writer can still use on the file
// system holding path (0 when it cannot be read).
func FreeBytes(path string) int64 {
	var st syscall.Statfs_t
	if syscall.Statfs(path, &st) != nil {
		return 0
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
