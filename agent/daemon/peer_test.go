package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"syncagent/agent/control"
)

// childEnv names the control socket a re-executed test binary calls as
// another user (TestControl_rootOnly).
const childEnv = "SYNCAGENT_TEST_PEER_SOCKET"

// peerResult is what the child saw: each call's HTTP status (200 for none).
type peerResult map[string]int

func init() {
	sock := os.Getenv(childEnv)
	if sock == "" {
		return
	}
	c := control.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := peerResult{}
	status := func(name string, err error) {
		var ce *control.Error
		switch {
		case err == nil:
			res[name] = 200
		case errors.As(err, &ce):
			res[name] = ce.Status
		default:
			res[name] = -1
		}
	}
	_, err := c.Status(ctx)
	status("status", err)
	_, err = c.PutRecord(ctx, "stock", "from-app", json.RawMessage(`{"store_ID":"a"}`))
	status("put", err)
	_, err = c.Generate(ctx, true)
	status("generate --new", err)
	_, err = c.Generate(ctx, false)
	status("generate --existing", err)
	status("clear-hwid", c.ClearHardwareID(ctx, 12, ""))
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// TestControl_rootOnly protects a site's data from apps on the box: every
// route was open to the socket's group. The operations that can cost a site
// its data (generate --new, clear-hwid) need root, from the kernel's peer
// credentials, while an app in the socket's group keeps record access.
func TestControl_rootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a caller as another user")
	}
	b := newBox(t)
	b.write(b.render(satellite12("http://127.0.0.1:9")))
	b.start()
	if err := os.Chmod(b.dir, 0o755); err != nil { // the app must reach the socket
		t.Fatal(err)
	}
	bin := copyTestBinary(t)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+b.socket)
	// An app: another user, in the socket's group (root's group here).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{0}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var got peerResult
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	want := peerResult{"status": 200, "put": 200, "generate --existing": 200, "generate --new": 403, "clear-hwid": 403}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s as an app: HTTP %d, want %d", k, got[k], v)
		}
	}
	// Root may.
	if _, err := b.client.Generate(context.Background(), true); err != nil {
		t.Errorf("generate --new as root: %v", err)
	}
}

// copyTestBinary copies this test binary where another user can run it.
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sa-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, "daemon.test")
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(fmt.Errorf("copy test binary: %w", err))
	}
	return path
}
