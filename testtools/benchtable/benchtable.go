// Package benchtable prints what a benchmark command measured: a Markdown
// table of each measure against its target, for the README and docs/, and
// the load average of the machine it ran on (the figures mean little
// without it on a shared box).
package benchtable

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Row is one measure; Target and Verdict are empty where there is no target.
type Row struct{ What, Value, Target, Verdict string }

// Verdict is how a Row says whether its target was met.
func Verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// Print writes rows as a Markdown table.
func Print(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "\n| measure | value | target | |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.What, r.Value, r.Target, r.Verdict)
	}
}

// LoadAvg is the 1, 5 and 15-minute load average, or "unknown".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// Measure is a Row.
func Measure(what, value, target, verdict string) Row { return Row{what, value, target, verdict} }
