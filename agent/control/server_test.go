package control

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPermit protects the privileged operations: only root (or the agent's
// own user) passes, and a caller whose credentials are unknown does not.
func TestPermit(t *testing.T) {
	req := func(p *Peer) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/v1/generate?mode=new", nil)
		if p != nil {
			r = r.WithContext(context.WithValue(r.Context(), peerKey{}, *p))
		}
		return r
	}
	var ce *Error
	if err := Permit(req(nil), "x"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("no credentials: %v", err)
	}
	if err := Permit(req(&Peer{UID: 0}), "x"); err != nil {
		t.Errorf("root: %v", err)
	}
	if err := Permit(req(&Peer{UID: 65534}), "generate --new"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden || !contains(ce.Msg, "sudo") {
		t.Errorf("an app: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
