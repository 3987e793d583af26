package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/cli"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
	"syncagent/testtools/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// vendor is a test vendor key: its keyring is given to the primary
// (vendor_keys), so the test can issue the unlock code a locked prefs
// change needs.
type vendor struct {
	keyring string
	priv    []byte
}

func newVendor(t *testing.T) vendor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("vendor_keys must be root-owned: run the tests as root")
	}
	pub, priv, err := unlock.Keygen(7)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "vendor.pub")
	if err := os.WriteFile(f, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return vendor{keyring: f, priv: priv}
}

// unlocked returns text with the [unlock] code the vendor issues for
// exactly its locked settings, on the box hwid.
func (v vendor) unlocked(t *testing.T, text, hwid string, seq uint32) string {
	t.Helper()
	p, err := prefs.Parse("prefs.toml", []byte(text))
	if err != nil {
		t.Fatalf("edited prefs: %v\n%s", err, text)
	}
	code, err := unlock.Issue(v.priv, unlock.Claims{KeyNumber: 7, HardwareID: hwid, Expiry: time.Now().Add(time.Hour), Seq: seq,
		Scope: unlock.ScopeChange, ChangeDigest: p.LockedDigest()})
	if err != nil {
		t.Fatal(err)
	}
	return text + fmt.Sprintf("\n[unlock]\ncode = %q\n", code)
}

// TestMigrate_buntToPostgres protects `syncagent central migrate`: a BuntDB
// primary whose satellites have synced — one of them is behind, with
// records queued for it and central data it has not read — is stopped,
// copied into PostgreSQL with the command, and started on the database
// with its datafile moved away. Both satellites go on syncing without
// initialising again or reading central data again; every record is on
// every site that must hold it, once, and nothing is queued twice.
func TestMigrate_buntToPostgres(t *testing.T) {
	v := newVendor(t)
	dsn := pgtest.DSN(t)
	s := newAgentsWith(t, nil, nil, func(_ *agentSet, a *agent) {
		if a.syncID == 1 {
			a.tweak = func(p *prefs.Prefs) { p.Paths.VendorKeys = v.keyring }
		}
	})
	prim, satA, satB := s.get("primary"), s.get("sat-a"), s.get("sat-b")
	prim.mustPut(t, "item", "I1", `{"name":"aspirin"}`)
	satA.mustPut(t, "stock", "a1", `{"store_ID":"a","qty":1}`)
	satA.mustPut(t, "stock", "sh1", `{"store_ID":"shared","qty":1}`)
	satB.mustPut(t, "stock", "b1", `{"store_ID":"b","qty":1}`)
	for _, a := range []*agent{satA, satB, satA, satB} {
		a.mustSync(t)
	}
	// sat-b falls behind: a shared record and central data wait for it.
	satA.mustPut(t, "stock", "sh2", `{"store_ID":"shared","qty":2}`)
	satA.mustPut(t, "stock", "sh1", `{"store_ID":"shared","qty":5}`)
	satA.mustSync(t)
	prim.mustPut(t, "item", "I2", `{"name":"quinine"}`)
	satA.mustSync(t)
	if n := s.queueOf(t, "sat-b"); n != 2 {
		t.Fatalf("sat-b's queue before the move: %d, want sh1 and sh2", n)
	}

	prim.stop()
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--prefs", prim.prefs, "central", "migrate", "--to", dsn}, nil, &out, &errOut); code != 0 {
		t.Fatalf("central migrate: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"records ", "queues        2 entries for 1 sites", "next:", "auth_key_file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("central migrate says:\n%s\nwant %q", out.String(), want)
		}
	}
	// Again into the same database: refused, nothing changed.
	if code := cli.Main([]string{"--prefs", prim.prefs, "central", "migrate", "--to", dsn}, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "already holds") {
		t.Errorf("a second migrate: exit %d, %s", code, errOut.String())
	}
	datafile := filepath.Join(prim.dir, "central.db")
	if err := os.Rename(datafile, datafile+".moved"); err != nil {
		t.Fatal(err)
	}
	p, err := prefs.Load(prim.prefs)
	if err != nil {
		t.Fatal(err)
	}
	p.Central = prefs.Central{Database: dsn, AuthKeyFile: filepath.Join(prim.dir, "auth.key")}
	text := string(prefs.Encode(p))
	if err := os.WriteFile(prim.prefs, []byte(v.unlocked(t, text, "hw-primary", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	prim.start()
	if st := prim.status(t); st.Prefs.State != "ok" {
		t.Fatalf("the primary runs %s prefs: %s", st.Prefs.State, st.Prefs.Error)
	}
	if _, err := os.Stat(datafile); !os.IsNotExist(err) {
		t.Fatalf("the primary on PostgreSQL made a datafile again (%v)", err)
	}

	// What waited for each site arrives once: sat-b's two queued records
	// and the central item it had not read; sat-a had everything.
	pulled := map[string]int{"sat-b": 3, "sat-a": 0}
	for i, a := range []*agent{satB, satA, satB, satA} {
		c := a.mustSync(t)
		if c.Initialisation != "" || c.CentralReread || c.Rewound {
			t.Errorf("%s after the move: initialisation %q, central reread %v, rewound %v", a.name, c.Initialisation, c.CentralReread, c.Rewound)
		}
		want := 0
		if i < 2 {
			want = pulled[a.name]
		}
		if c.Pulled != want {
			t.Errorf("%s's cycle %d after the move pulled %d, want %d", a.name, i, c.Pulled, want)
		}
	}
	satB.mustPut(t, "stock", "sh3", `{"store_ID":"shared","qty":3}`)
	prim.mustPut(t, "item", "I3", `{"name":"zinc"}`)
	for _, a := range []*agent{satB, satA} {
		a.mustSync(t)
	}
	want := map[string]map[string]string{
		"sat-a": {"a1": `{"store_ID":"a","qty":1}`, "sh1": `{"store_ID":"shared","qty":5}`, "sh2": `{"store_ID":"shared","qty":2}`, "sh3": `{"store_ID":"shared","qty":3}`},
		"sat-b": {"b1": `{"store_ID":"b","qty":1}`, "sh1": `{"store_ID":"shared","qty":5}`, "sh2": `{"store_ID":"shared","qty":2}`, "sh3": `{"store_ID":"shared","qty":3}`},
	}
	for _, a := range []*agent{satA, satB} {
		if got := a.records(t, "stock"); fmt.Sprint(got) != fmt.Sprint(want[a.name]) {
			t.Errorf("%s holds %v\nwant %v", a.name, got, want[a.name])
		}
		items := a.records(t, "item")
		if len(items) != 3 || !strings.Contains(items["I2"], "quinine") || !strings.Contains(items["I3"], "zinc") {
			t.Errorf("%s holds central items %v, want I1, I2, I3", a.name, items)
		}
		if n := s.queueOf(t, a.name); n != 0 {
			t.Errorf("%s still has %d queued on the primary", a.name, n)
		}
	}
	if got := len(prim.records(t, "stock")); got != 5 {
		t.Errorf("the primary holds %d stock records, want 5", got)
	}
}
