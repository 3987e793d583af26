package cli

import (
	"fmt"
	"strings"
	"testing"
)

const hash = "pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"

func TestParseSites(t *testing.T) {
	cases := []struct {
		name, file string
		want       string // the rows as "id:user:stores:hwid@line", or the error's pieces
		err        []string
	}{
		{name: "csv", file: "sync_id,user,password_hash,stores,hardware_id,url\n12,clinic-12," + hash + ",a;b,hw-12,\n\n13, clinic-13 ," + hash + ",c,,\n",
			want: "12:clinic-12:[a b]:hw-12@2 13:clinic-13:[c]:@4"},
		{name: "csv, columns in any order, optional ones left out", file: "\ufeffstores,Sync_ID,password_hash,user\nx,5," + hash + ",five\n",
			want: "5:five:[x]:@2"},
		{name: "json lines", file: `{"sync_id":12,"user":"clinic-12","password_hash":"` + hash + `","stores":["a","b"]}` + "\n\n" +
			`{"sync_id":13,"user":"clinic-13","password_hash":"` + hash + `","stores":["c"],"hardware_id":"hw"}`,
			want: "12:clinic-12:[a b]:@1 13:clinic-13:[c]:hw@3"},
		{name: "empty", file: "", err: []string{"the file is empty"}},
		{name: "header only", file: "sync_id,user,password_hash,stores\n", err: []string{"no rows"}},
		{name: "unknown column", file: "sync_id,user,password_hash,stores,colour\n", err: []string{`line 1: unknown column "colour"`}},
		{name: "missing column", file: "sync_id,user,stores\n", err: []string{`line 1: the header has no "password_hash" column`}},
		{name: "every bad line named", file: "sync_id,user,password_hash,stores\nx,a," + hash + ",s\n3,b," + hash + ",\n4,c:d," + hash + ",s\n5,e," + hash + ",s\n6,f\n",
			err: []string{`line 2: sync_id "x" is not a number`, "line 3: site 3 needs at least one store", "line 4: a user name cannot contain ':'", "line 6: "}},
		{name: "bad quoting", file: "sync_id,user,password_hash,stores\n2,\"a,b\n", err: []string{"line 2:"}},
		{name: "json, unknown field", file: `{"sync_id":2,"user":"u","password_hash":"h","stores":["s"],"colour":1}`, err: []string{`line 1: not a site row: json: unknown field "colour"`}},
		{name: "json, two objects on a line", file: `{"sync_id":2,"user":"u","password_hash":"h","stores":["s"]} {}`, err: []string{"line 1: one JSON object per line"}},
		{name: "json, bad second line", file: `{"sync_id":2,"user":"u","password_hash":"h","stores":["s"]}` + "\n" + `{"sync_id":1}`, err: []string{"line 2: sync_id must be above 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := parseSites(strings.NewReader(tc.file))
			if tc.err != nil {
				for _, w := range tc.err {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("error %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, fmt.Sprintf("%d:%s:%v:%s@%d", r.SyncID, r.User, r.Stores, r.HardwareID, r.Line))
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("rows %s, want %s", strings.Join(got, " "), tc.want)
			}
		})
	}
}

// FuzzParseSites: an import file is outside input; parsing it never
// panics, and every row it accepts passed the registry's shape rules with
// a line number.
func FuzzParseSites(f *testing.F) {
	f.Add("sync_id,user,password_hash,stores\n2,a," + hash + ",s;t\n")
	f.Add(`{"sync_id":2,"user":"u","password_hash":"h","stores":["s"]}`)
	f.Add("sync_id,user\n\"")
	f.Fuzz(func(t *testing.T, file string) {
		rows, err := parseSites(strings.NewReader(file))
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.SyncID <= 1 || r.User == "" || len(r.Stores) == 0 || r.Line < 1 {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

// An import file that fails its checks is refused before the agent is
// asked, with every bad line printed (not only the first).
func TestMain_sitesImportPrintsEveryLine(t *testing.T) {
	file := "sync_id,user,password_hash,stores\nx,a," + hash + ",s\n3,b," + hash + ",\n"
	code, _, errOut := run(t, file, "sites", "import", "-", "--socket", "/nonexistent/control.sock")
	if code == 0 || !strings.Contains(errOut, `line 2: sync_id "x" is not a number`) || !strings.Contains(errOut, "line 3: site 3 needs at least one store") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(errOut, "not running") {
		t.Errorf("a bad file reached for the agent: %q", errOut)
	}
}
