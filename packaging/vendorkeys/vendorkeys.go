// Package vendorkeys embeds the vendor's public keyring (vendor-keys.pub in
// this folder) into the binary, so a box can verify unlock codes with no
// file on disk. The format is the keyring format of agent/unlock.
//
// Imported only by the lock policy (agent/lock), which passes Keyring to
// unlock.ParseKeyring and merges the root-owned vendor_keys file into it.
package vendorkeys

import _ "embed"

// Keyring is the content of vendor-keys.pub: public keys only.
//
//go:embed vendor-keys.pub
var Keyring []byte
