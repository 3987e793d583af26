// Package hw computes this box's hardware fingerprint. It is the only package
// that imports ghw.
//
// The fingerprint comes from the strongest tier of identifiers the box has,
// and from that tier alone, so hardware of a weaker tier coming or going
// never changes it:
//
//  1. firmware: DMI product UUID and product/board/chassis serials, and the
//     device-tree serial-number;
//  2. the MAC of one on-board NIC (universally administered, not virtual,
//     not USB);
//  3. the serial of the disk holding the root filesystem (not removable,
//     not USB);
//  4. an app-specific HMAC of /etc/machine-id.
//
// Placeholder values ("To be filled by O.E.M.", all-zero UUIDs, …) count as
// absent. Only a SHA-256 of the chosen identifiers leaves the box, as a
// UUID-formatted ID; Fingerprint.Sources names their kinds, never values.
package hw
