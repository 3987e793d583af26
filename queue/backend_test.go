package queue

import "testing"

// TestKidOp_Refs protects queue/pg's reading of child-index keys: ids may
// hold ':' and the parent's id is length-prefixed.
func TestKidOp_Refs(t *testing.T) {
	for _, tc := range []struct{ parent, child Ref }{
		{Ref{"transact", "t1"}, Ref{"trans_line", "l1"}},
		{Ref{"transact", "a:b:3:c"}, Ref{"trans_line", "x:y"}},
		{Ref{"head", ""}, Ref{"line", ":"}},
	} {
		p, c, ok := KidOp{Key: kidKey(tc.parent, tc.child)}.Refs()
		if !ok || p != tc.parent || c != tc.child {
			t.Errorf("Refs of %q = %v %v %v", kidKey(tc.parent, tc.child), p, c, ok)
		}
	}
	for _, bad := range []string{"", "kid:", "kid:t:9:x:c:y", "kid:t:x:y", "rec:t:i"} {
		if _, _, ok := (KidOp{Key: bad}).Refs(); ok {
			t.Errorf("Refs(%q) ok", bad)
		}
	}
	if r, ok := (PlanRecord{Key: recKey("item", "a:b")}).Ref(); !ok || r != (Ref{"item", "a:b"}) {
		t.Errorf("PlanRecord.Ref = %v %v", r, ok)
	}
}
