// Package hw computes this box's hardware fingerprint. It is the only package
// that imports ghw.
package hw
