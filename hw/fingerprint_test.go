package hw

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fixtures are the trees under testdata/ (built by testdata/mkfixtures.sh),
// what each must yield, and the ID it must yield. The golden IDs pin the
// hash itself: an ID pinned on the primary must never change under a box
// because this code was refactored.
var fixtures = []struct {
	tree        string
	wantSources []string
	wantIDs     []identifier // the raw identifiers that must feed the ID
	wantID      string
}{
	{"pc-dmi", []string{"dmi.product_uuid", "dmi.product_serial", "dmi.board_serial", "dmi.chassis_serial"},
		[]identifier{{"dmi.product_uuid", "4c4c4544-0042-3510-8052-b4c04f4d3732"}, {"dmi.product_serial", "4mr5bp2"},
			{"dmi.board_serial", "/4mr5bp2/cnfcw0097t00ab/"}, {"dmi.chassis_serial", "4mr5bp2"}},
		"c5135b6c-ad51-8a24-9936-e1629f152bc7"},
	{"pc-dmi-extra", []string{"dmi.product_uuid", "dmi.product_serial", "dmi.board_serial", "dmi.chassis_serial"},
		[]identifier{{"dmi.product_uuid", "4c4c4544-0042-3510-8052-b4c04f4d3732"}, {"dmi.product_serial", "4mr5bp2"},
			{"dmi.board_serial", "/4mr5bp2/cnfcw0097t00ab/"}, {"dmi.chassis_serial", "4mr5bp2"}},
		"c5135b6c-ad51-8a24-9936-e1629f152bc7"},
	{"arm-dt", []string{"devicetree.serial"},
		[]identifier{{"devicetree.serial", "10000000a1b2c3d4"}}, "c1dd2488-bb0d-82e4-bd47-e684aa38b6f9"},
	{"arm-nic", []string{"nic"}, []identifier{{"nic", "00:1e:06:aa:bb:cc"}}, "33e68e60-fafd-8b87-9554-c05513b48689"},
	{"arm-nic-usb", []string{"nic"}, []identifier{{"nic", "00:1e:06:aa:bb:cc"}}, "33e68e60-fafd-8b87-9554-c05513b48689"},
	{"vm-lamac", []string{"disk"}, []identifier{{"disk", "vm-7f3a-root"}}, "1d5f9f73-ef3b-8fef-b578-4281dfa4855d"},
	{"vm-lamac-disk2", []string{"disk"}, []identifier{{"disk", "vm-7f3a-root"}}, "1d5f9f73-ef3b-8fef-b578-4281dfa4855d"},
	{"vm-lvm", []string{"disk"}, []identifier{{"disk", "lvm-root-disk"}}, "ccf0a908-19e6-86b1-95f9-3260e184bef4"},
	{"vm-machineid", []string{"machine-id"}, nil, "d991887b-49d1-8f9d-9e62-9e8ae51c3ff8"},
	{"pc-placeholder", []string{"nic"}, []identifier{{"nic", "00:e0:4c:68:12:34"}}, "e49c2cd1-d878-8e6f-9b27-b76e0d64b301"},
}

// sameMachine lists fixture pairs that differ only by hardware that must not
// change the ID: a USB NIC, a bridge, a second disk.
var sameMachine = [][2]string{
	{"pc-dmi", "pc-dmi-extra"},
	{"arm-nic", "arm-nic-usb"},
	{"vm-lamac", "vm-lamac-disk2"},
}

var uuidFormat = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// Protects tier order, the identifiers each tier picks, and the hash itself.
func TestProbe_Fixtures(t *testing.T) {
	for _, tt := range fixtures {
		t.Run(tt.tree, func(t *testing.T) {
			t.Parallel()
			fp := mustProbe(t, filepath.Join("testdata", tt.tree))
			if got, want := fp.Sources, tt.wantSources; !slices.Equal(got, want) {
				t.Errorf("Sources = %q, want %q", got, want)
			}
			if tt.wantIDs != nil {
				if got, want := fp.ID, fingerprintOf(tt.wantIDs).ID; got != want {
					t.Errorf("ID = %s, want the hash of %v (%s)", got, tt.wantIDs, want)
				}
			}
			if got, want := fp.ID, tt.wantID; got != want {
				t.Errorf("ID = %s, want golden %s", got, want)
			}
			if !uuidFormat.MatchString(fp.ID) {
				t.Errorf("ID %q is not a lowercase version-8 UUID", fp.ID)
			}
		})
	}
}

// Protects the promise that a USB NIC, a bridge or a second disk never
// changes a box's ID.
func TestProbe_ExtraHardwareKeepsID(t *testing.T) {
	for _, pair := range sameMachine {
		t.Run(pair[1], func(t *testing.T) {
			t.Parallel()
			base := mustProbe(t, filepath.Join("testdata", pair[0]))
			more := mustProbe(t, filepath.Join("testdata", pair[1]))
			if base.ID != more.ID || !slices.Equal(base.Sources, more.Sources) {
				t.Errorf("%s gives %v, %s gives %v; want the same", pair[0], base, pair[1], more)
			}
		})
	}
}

// Protects stability: the same machine gives the same ID every time and
// wherever its tree is mounted.
func TestProbe_Stable(t *testing.T) {
	for _, tt := range fixtures {
		t.Run(tt.tree, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join("testdata", tt.tree)
			first, again := mustProbe(t, src), mustProbe(t, src)
			moved := mustProbe(t, copyTree(t, src))
			if first.ID != again.ID || first.ID != moved.ID {
				t.Errorf("IDs %s, %s, %s (moved); want one ID", first.ID, again.ID, moved.ID)
			}
		})
	}
}

// Protects uniqueness: different machines give different IDs.
func TestProbe_DiffersBetweenTrees(t *testing.T) {
	seen := map[string]string{} // ID → tree
	for _, tt := range fixtures {
		id := mustProbe(t, filepath.Join("testdata", tt.tree)).ID
		other, dup := seen[id]
		if dup && !slices.Contains(sameMachine, [2]string{other, tt.tree}) {
			t.Errorf("%s and %s share ID %s", other, tt.tree, id)
		}
		seen[id] = tt.tree
	}
}

// Protects privacy: no serial, UUID, MAC or machine-id leaves the box, only
// their hash and the names of their kinds.
func TestProbe_NoRawIdentifier(t *testing.T) {
	known := []string{"dmi.product_uuid", "dmi.product_serial", "dmi.board_serial", "dmi.chassis_serial",
		"devicetree.serial", "nic", "disk", "machine-id"}
	for _, tt := range fixtures {
		root := filepath.Join("testdata", tt.tree)
		fp := mustProbe(t, root)
		for _, s := range fp.Sources {
			if !slices.Contains(known, s) {
				t.Errorf("%s: source %q is not a known kind", tt.tree, s)
			}
		}
		shown := strings.ToLower(fmt.Sprintf("%#v", fp))
		raw := []string{normalize(readFixture(t, root, "etc/machine-id"))}
		p := newProber(root)
		for _, tier := range tiers {
			ids, err := tier.probe(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				raw = append(raw, id.value, strings.ReplaceAll(id.value, ":", ""))
			}
		}
		for _, v := range raw {
			if len(v) >= 4 && strings.Contains(shown, v) {
				t.Errorf("%s: fingerprint %s shows raw identifier %q", tt.tree, shown, v)
			}
		}
	}
}

// Protects the error for a box with nothing to identify it: it says so, and
// what was looked for.
func TestProbe_NothingFound(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "etc/machine-id", "uninitialized")
	writeFile(t, root, "sys/class/dmi/id/product_uuid", "00000000-0000-0000-0000-000000000000")
	_, err := Probe(root)
	if err == nil {
		t.Fatal("Probe of an empty tree succeeded")
	}
	for _, want := range []string{"no hardware identifier", "DMI product UUID", "device-tree", "NIC", "disk", "/etc/machine-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := Probe(filepath.Join(root, "missing")); err == nil {
		t.Error("Probe of a missing root succeeded")
	}
}

// Protects "unreadable is empty, not an error": a file that cannot be read
// only removes its identifier (a directory where a file should be is
// unreadable even for root, who runs these tests in CI containers).
func TestProbe_UnreadableFiles(t *testing.T) {
	tests := []struct {
		name        string
		breakPaths  []string
		wantSources []string
	}{
		{"one DMI serial", []string{"sys/class/dmi/id/product_serial"},
			[]string{"dmi.product_uuid", "dmi.board_serial", "dmi.chassis_serial"}},
		{"all DMI", []string{"sys/class/dmi/id/product_uuid", "sys/class/dmi/id/product_serial",
			"sys/class/dmi/id/board_serial", "sys/class/dmi/id/chassis_serial"}, []string{"nic"}},
		{"DMI, NIC and udev", []string{"sys/class/dmi/id", "sys/class/net", "run/udev/data"}, []string{"machine-id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := copyTree(t, filepath.Join("testdata", "pc-dmi"))
			for _, rel := range tt.breakPaths {
				path := filepath.Join(root, rel)
				if err := os.RemoveAll(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := mustProbe(t, root).Sources, tt.wantSources; !slices.Equal(got, want) {
				t.Errorf("Sources = %q, want %q", got, want)
			}
		})
	}
}

// Protects the hash's framing: order and duplicates do not matter, field
// boundaries do.
func TestFingerprintOf(t *testing.T) {
	a := fingerprintOf([]identifier{{"dmi.product_serial", "x1"}, {"dmi.board_serial", "y2"}})
	b := fingerprintOf([]identifier{{"dmi.board_serial", "y2"}, {"dmi.product_serial", "x1"}, {"dmi.board_serial", "y2"}})
	if a.ID != b.ID {
		t.Errorf("order or duplicates changed the ID: %s vs %s", a.ID, b.ID)
	}
	if got, want := strings.Join(a.Sources, ","), "dmi.product_serial,dmi.board_serial"; got != want {
		t.Errorf("Sources = %s, want %s", got, want)
	}
	c := fingerprintOf([]identifier{{"disk", "ab"}, {"disk", "c"}})
	d := fingerprintOf([]identifier{{"disk", "a"}, {"disk", "bc"}})
	if c.ID == d.ID {
		t.Error("moving a field boundary kept the ID")
	}
	e := fingerprintOf([]identifier{{"disk", "x1"}})
	f := fingerprintOf([]identifier{{"nic", "x1"}})
	if e.ID == f.ID {
		t.Error("the same value from another kind of source gave the same ID")
	}
}
