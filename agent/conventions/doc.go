// Package conventions holds tests that keep the codebase's rules true: every
// package documents itself, and each outside dependency is imported only by
// the package that owns it.
package conventions
