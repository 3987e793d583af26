package hw

import (
	"strings"
	"testing"
)

// Protects the placeholder rules: every value firmware ships instead of a
// serial is ignored, whatever its case, padding or separators, and no real
// serial is mistaken for one.
func TestIsPlaceholder(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		// Empty and blank.
		{"", true}, {" ", true}, {"\t\n", true}, {"\x00\x00", true},
		// The brief's list, in the spellings firmware uses.
		{"unknown", true}, {"Unknown", true}, {"UNKNOWN", true},
		{"Default string", true}, {"Default String", true}, {"  DEFAULT   STRING \n", true},
		{"To be filled by O.E.M.", true}, {"To Be Filled By O.E.M.", true}, {"To be filled by O.E.M", true},
		{"System Serial Number", true}, {"Chassis Serial Number", true}, {"Base Board Serial Number", true},
		{"None", true}, {"0", true}, {"N/A", true}, {"n/a", true}, {"NA", true},
		{"Not Specified", true}, {"Not Applicable", true}, {"Not Available", true}, {"OEM", true},
		{"Type2 - Board Serial Number", true}, {"Default", true}, {"INVALID", true}, {"Serial", true},
		// All-zero and all-F UUIDs, and UUIDs shipped on many boards.
		{"00000000-0000-0000-0000-000000000000", true},
		{"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", true},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"03000200-0400-0500-0006-000700080009", true},
		{"00020003-0004-0005-0006-000700080009", true},
		{"12345678-1234-5678-90AB-CDDEEFAABBCC", true},
		// One character repeated, with or without separators or a 0x prefix.
		{"00000000", true}, {"0000000000000000", true}, {"0x00000000", true}, {"0x0", true},
		{"FFFFFFFF", true}, {"xxxxxxxx", true}, {"XXXX-XXXX", true}, {"1", true}, {"00:00:00:00:00:00", true},
		// No letter or digit at all.
		{"-", true}, {"....", true}, {"*********", true}, {"\xff\xff\xff", true},
		// Counting sequences and QEMU's disk serials.
		{"123456789", true}, {"1234567890", true}, {"0123456789", true}, {"QM00001", true}, {"qm00003", true},
		// systemd's machine-id before first boot.
		{"uninitialized", true},

		// Real values.
		{"4c4c4544-0042-3510-8052-b4c04f4d3732", false},
		{"4MR5BP2", false}, {"/4MR5BP2/CNFCW0097T00AB/", false},
		{"10000000a1b2c3d4", false}, {"10000000a1b2c3d4\x00", false},
		{"0x1234abcd", false}, {"S4EWNX0R123456", false}, {"WD-WX12A3456789", false},
		{"VB1f2a3b4c-5d6e7f80", false}, {"00000001", false}, {"0x00000010", false},
		{"PF2XYZ12", false}, {"Default string 2", false}, {"QM000012", false}, {"ab", false},
	}
	for _, tt := range tests {
		if got := isPlaceholder(tt.value); got != tt.want {
			t.Errorf("isPlaceholder(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

// Protects the table itself: each entry matches however it is padded or
// capitalised (entries must be stored normalized, or they never match).
func TestIsPlaceholder_TableEntries(t *testing.T) {
	for v := range placeholders {
		if v != normalize(v) {
			t.Errorf("table entry %q is not normalized (%q)", v, normalize(v))
		}
		for _, variant := range []string{v, strings.ToUpper(v), " " + v + " \n", v + "\x00"} {
			if !isPlaceholder(variant) {
				t.Errorf("isPlaceholder(%q) = false, want true", variant)
			}
		}
	}
}

// Protects what normalize folds together (so a re-read or re-capitalised
// identifier hashes the same) and what it keeps apart.
func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  ABC-def \n", "abc-def"},
		{"10000000a1b2c3d4\x00", "10000000a1b2c3d4"},
		{"a  b\tc", "a b c"},
		{"a-b", "a-b"},
	}
	for _, tt := range tests {
		if got := normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Protects the NIC filter: only unicast, universally administered, real
// EUI-48 addresses identify a box.
func TestUniversalMAC(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"d8:9e:f3:12:34:56", "d8:9e:f3:12:34:56", true},
		{"D8:9E:F3:12:34:56\n", "d8:9e:f3:12:34:56", true},
		{"d8-9e-f3-12-34-56", "d8:9e:f3:12:34:56", true},
		{"52:54:00:12:34:56", "", false}, // QEMU: locally administered
		{"02:42:ac:11:00:02", "", false}, // Docker: locally administered
		{"01:00:5e:00:00:01", "", false}, // multicast
		{"ff:ff:ff:ff:ff:ff", "", false}, // broadcast
		{"00:00:00:00:00:00", "", false},
		{"00:11:22:33:44:55", "", false}, // shipped on many cheap boards
		{"", "", false},
		{"unknown", "", false},
		{"00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01", "", false}, // InfiniBand
	}
	for _, tt := range tests {
		got, ok := universalMAC(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("universalMAC(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
