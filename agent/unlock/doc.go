// Package unlock verifies and issues the signed authorisation codes that
// unlock a box's locked synchronisation settings.
//
// A code is an Ed25519 signature by one of up to 16 vendor keys over this
// box's hardware ID, an issue time and an expiry, a per-box sequence number, a
// scope and, for a change-bound code, the SHA-256 digest of the exact locked
// settings being applied. The box recomputes its hardware ID and the digest
// itself; the code carries only a two-byte tag of each, so a refusal can say
// "issued for another box" or "issued for another change" instead of "bad
// signature". The code is Crockford base32 with a check symbol, printed in
// groups of five (see code.go for the layout).
//
// Box side: a Verifier holds the vendor Keyring (embedded at build time from
// packaging/vendorkeys, extended by the root-owned vendor_keys file), the
// box's hardware ID, a clock and a Ledger. Check validates a code without
// spending it; Redeem also records its sequence number, fsynced, before it
// returns, so the caller applies a change only after Redeem returned nil and a
// replayed code is refused even after a restart. Every refusal is one of the
// Err* sentinels, with a message that tells the technician what to do.
//
// Vendor side: Keygen makes a key pair, Issue signs a code. The daemon never
// reads a private key.
//
// Imported by the lock policy (agent/lock) and the CLI (agent/cli:
// `authcode keygen`, `authcode issue`, `unlock`). It imports only the
// standard library.
package unlock
