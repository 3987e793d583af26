package benchtable

import (
	"bytes"
	"strings"
	"testing"
)

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, []Row{{"puts", "12/s", "≥ 30/s", Verdict(false)}, {"baseline", "6/s", "", ""}})
	want := "\n| measure | value | target | |\n|---|---|---|---|\n| puts | 12/s | ≥ 30/s | MISSED |\n| baseline | 6/s |  |  |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if Verdict(true) != "ok" {
		t.Error("a met target is not ok")
	}
	if l := LoadAvg(); l != "unknown" && len(strings.Fields(l)) != 3 {
		t.Errorf("load average %q", l)
	}
}
