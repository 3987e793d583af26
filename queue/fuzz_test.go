package queue

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenLocal: whatever bytes the datafile holds, OpenLocal neither
// panics nor refuses to start, and the file it leaves opens cleanly again.
func FuzzOpenLocal(f *testing.F) {
	good := []byte("*3\r\n$3\r\nset\r\n$9\r\nsys:epoch\r\n$18\r\n\"00112233aabbccdd\"\r\n" +
		"*3\r\n$3\r\nset\r\n$8\r\nrec:t:id\r\n$81\r\n{\"pending\":\"00000000000000000001\",\"version\":1,\"action\":\"insert\",\"data\":{\"a\":1}}\r\n")
	f.Add(good)
	for _, tail := range badTails {
		f.Add(append(append([]byte{}, good...), tail...))
		f.Add(append(append([]byte{}, tail...), good...))
	}
	f.Add(good[:len(good)-7])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "sat.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLocal(path, LocalOptions{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		checkLocalConsistent(t, l, snapshot(t, l.st), 0, "fuzzed file")
		if _, err := l.Write(storeRec("t", "after", "s", 1)); err != nil {
			t.Fatalf("write: %v", err)
		}
		l.Close()
		scan, err := scanFile(path, nil)
		if err != nil || !scan.clean() {
			t.Fatalf("file not clean after open and write: %+v, %v", scan, err)
		}
		l, err = OpenLocal(path, LocalOptions{})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if _, ok, _ := l.Get("t", "after"); !ok {
			t.Fatal("write lost")
		}
		l.Close()
	})
}
