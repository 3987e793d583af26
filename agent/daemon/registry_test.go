package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/passwd"
)

// TestPrimary_registryChangesNeedOneCode protects the lock at scale: a
// change of the site registry, whatever its size, needs one unlock code
// bound to the digest of exactly that change; the code is spent once; the
// change is logged with who unlocked it.
func TestPrimary_registryChangesNeedOneCode(t *testing.T) {
	b := newBox(t)
	b.write(b.primaryPrefs(siteRow(t, 12, "a")))
	b.start()
	ctx := context.Background()
	h, err := passwd.Hash(passwd.SHA256Hex("pw"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []control.SiteRow
	for id := 20; id < 120; id++ {
		rows = append(rows, control.SiteRow{SyncID: id, User: fmt.Sprintf("clinic-%d", id), PasswordHash: h, Stores: []string{"s"}, Line: id - 18})
	}
	imp := control.SitesChange{Op: "import", Rows: rows}

	var ce *control.Error
	_, err = b.client.ChangeSites(ctx, imp)
	if !errors.As(err, &ce) || ce.Status != http.StatusForbidden || !contains(ce.Msg, "unlock code") {
		t.Fatalf("import without a code: %v", err)
	}
	dry := imp
	dry.DryRun = true
	plan, err := b.client.ChangeSites(ctx, dry)
	if err != nil || !plan.DryRun || plan.Put != 100 || !contains(ce.Msg, plan.ChangeDigest) || plan.HardwareID == "" {
		t.Fatalf("dry run = %+v, %v (the refusal said %q)", plan, err, ce.Msg)
	}
	if sites, _ := b.client.Sites(ctx); len(sites) != 1 {
		t.Fatalf("a refused import and a dry run left %d sites, want 1", len(sites))
	}
	code := b.code(1, plan.ChangeDigest, time.Hour)
	done, err := b.client.ChangeSites(ctx, control.SitesChange{Op: "import", Rows: rows, Code: code})
	if err != nil || done.Generation != 1 || done.UnlockedBy == "" {
		t.Fatalf("import with its code = %+v, %v", done, err)
	}
	if sites, _ := b.client.Sites(ctx); len(sites) != 101 {
		t.Errorf("after the import: %d sites, want 101", len(sites))
	}
	// The code was spent; a code for another change is refused.
	rm := control.SitesChange{Op: "remove", Remove: []int{20}, Code: code}
	if _, err := b.client.ChangeSites(ctx, rm); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("remove with the import's code: %v", err)
	}
	rm.Code = b.code(2, lock.OperationDigest("clear-hwid 20"), time.Hour)
	if _, err := b.client.ChangeSites(ctx, rm); !errors.As(err, &ce) || !contains(ce.Msg, "another change") {
		t.Errorf("remove with another operation's code: %v", err)
	}
	log, err := b.client.SitesLog(ctx, 10)
	if err != nil || len(log) != 1 || log[0].What != "import 100 rows (100 added, 0 replaced)" || !contains(log[0].By, "key") || !contains(log[0].By, "uid") {
		t.Errorf("log = %+v, %v", log, err)
	}
	// clear-hwid reaches a registry site too.
	if err := b.client.ClearHardwareID(ctx, 20, b.code(3, lock.OperationDigest("clear-hwid 20"), time.Hour)); err != nil {
		t.Errorf("clear-hwid of a registry site: %v", err)
	}
	// A filtered list is answered by the primary.
	if got, err := b.client.SitesMatching(ctx, "11", ""); err != nil || len(got) != 10 {
		t.Errorf("sites --filter 11: %d sites, %v; want 110..119", len(got), err)
	}
}
