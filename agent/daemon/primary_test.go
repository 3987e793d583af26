package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syncagent/agent/lock"
	"testing"
	"time"

	"syncagent/agent/control"
)

func (b *box) primaryPrefs(rows ...row) string {
	return b.render(spec{syncID: 1, interval: 10, stores: []string{"central"}, listen: "127.0.0.1:0", rows: rows})
}

func siteRow(t *testing.T, id int, store string) row {
	return row{syncID: id, user: fmt.Sprintf("clinic-%d", id), passwordHash: mustHash(t, "pw"), stores: []string{store}}
}

// TestPrimary_siteChangesNeedCodes protects the primary's lock: adding a
// site row and clearing a hardware pin both need an unlock code.
func TestPrimary_siteChangesNeedCodes(t *testing.T) {
	b := newBox(t)
	one := siteRow(t, 12, "a")
	b.write(b.primaryPrefs(one))
	b.start()
	two := b.primaryPrefs(one, siteRow(t, 13, "b"))
	b.write(two)
	if r := b.reload(); !contains(r.State, "an unlock code is needed") {
		t.Errorf("site row added without a code: %s", r.State)
	}
	b.write(two + unlockSection(b.code(1, digestOf(t, two), time.Hour)))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("site row with its code: %s", r.State)
	}
	sites, err := b.client.Sites(context.Background())
	if err != nil || len(sites) != 2 {
		t.Fatalf("sites = %v, %v", sites, err)
	}

	ctx := context.Background()
	var ce *control.Error
	err = b.client.ClearHardwareID(ctx, 12, "")
	if !errors.As(err, &ce) || ce.Status != http.StatusForbidden || !contains(ce.Msg, lock.OperationDigest("clear-hwid 12")) {
		t.Fatalf("clear-hwid without a code: %v", err)
	}
	if err := b.client.ClearHardwareID(ctx, 12, b.code(2, lock.OperationDigest("clear-hwid 13"), time.Hour)); !errors.As(err, &ce) || !contains(ce.Msg, "another change") {
		t.Errorf("clear-hwid with another site's code: %v", err)
	}
	if err := b.client.ClearHardwareID(ctx, 12, b.code(3, lock.OperationDigest("clear-hwid 12"), time.Hour)); err != nil {
		t.Errorf("clear-hwid with its code: %v", err)
	}
}
