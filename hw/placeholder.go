package hw

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// placeholders are values firmware, udev or boot loaders report when no real
// identifier was programmed. They are compared after normalize (trimmed,
// case-folded, inner whitespace collapsed). Values made of one repeated
// character ("0000", "FFFFFFFF-FFFF-…", "xxxxxx") and values without a single
// letter or digit are caught by isPlaceholder's rules instead of this table.
var placeholders = map[string]bool{
	// Words and phrases.
	"unknown": true, "none": true, "null": true, "nil": true, "empty": true,
	"n/a": true, "na": true, "undefined": true, "invalid": true, "default": true,
	"default string": true, "defaultstring": true, "default_string": true,
	"not specified": true, "not applicable": true, "not available": true,
	"not present": true, "not settable": true, "not set": true, "none specified": true,
	"no serial": true, "no asset tag": true,
	"oem": true, "o.e.m.": true, "o.e.m": true,
	"to be filled by o.e.m.": true, "to be filled by o.e.m": true, "to be filled by oem": true,
	"fill by oem": true, "filled by oem": true,
	"serial": true, "serial number": true, "serialnumber": true, "sn": true,
	"system serial number": true, "system serial": true, "system product name": true,
	"chassis serial number": true, "chassis serial": true,
	"base board serial number": true, "baseboard serial number": true,
	"board serial number": true, "board serial": true,
	"type1productconfigid": true, "type2 - board serial number": true,
	"type3 - chassis serial number": true,

	// Counting sequences typed in by a board maker.
	"123456": true, "12345678": true, "123456789": true, "1234567890": true,
	"0123456789": true, "0123456789abcdef": true, "abcdef": true,

	// Product UUIDs shipped identical on many boards (AMI defaults, seen in
	// both byte orders) and a common hand-typed one.
	"03000200-0400-0500-0006-000700080009": true,
	"00020003-0004-0005-0006-000700080009": true,
	"12345678-1234-5678-90ab-cddeefaabbcc": true,

	// Disk serials QEMU gives every emulated IDE/SATA disk and CD-ROM.
	"qm00001": true, "qm00002": true, "qm00003": true, "qm00004": true,
	"qm00005": true, "qm00006": true,

	// systemd writes this into /etc/machine-id until first boot completes.
	"uninitialized": true,
}

// normalize trims whitespace and NUL padding (device-tree strings end in NUL),
// collapses inner whitespace and folds case, so that the same identifier read
// twice, or from firmware that changed its capitalisation, hashes the same.
func normalize(v string) string {
	v = strings.Trim(v, "\x00 \t\r\n")
	return strings.ToLower(strings.Join(strings.Fields(v), " "))
}

// isPlaceholder reports whether v is not a real identifier.
func isPlaceholder(v string) bool {
	v = normalize(v)
	if v == "" || placeholders[v] {
		return true
	}
	// Keep letters and digits only: separators never make a value unique.
	core := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, v)
	if core == "" {
		return true // "-", "....", "\xff\xff"
	}
	if len(core) > 2 && strings.HasPrefix(core, "0x") {
		core = core[2:] // device-tree and EEPROM dumps: "0x00000000"
	}
	_, size := utf8.DecodeRuneInString(core)
	return strings.Count(core, core[:size])*size == len(core) // "0", "0000…", "ffff…", "xxxx"
}
