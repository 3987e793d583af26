package adapt

import (
	"fmt"
	"time"
)

// Estimate returns the current link estimate and next limit.
func (s *Sizer) Estimate() Estimate {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := Estimate{FailuresPerSec: s.allHz.perSecond()}
	if s.fit.Seen {
		e.RTT = time.Duration(s.fit.RTT * float64(time.Second))
		if s.fit.PerByte > 0 {
			e.BytesPerSec = 1 / s.fit.PerByte
		}
	}
	e.Records, e.Bytes = s.limitLocked()
	return e
}

// String is one short line for status, e.g.
// "auto 200 rec/256KiB · rtt 310ms · 96KB/s · 0.01 fail/s".
func (s *Sizer) String() string {
	e := s.Estimate()
	mode := "auto"
	if s.cfg.Fixed > 0 {
		mode = "fixed"
	}
	head := fmt.Sprintf("%s %d rec/%s", mode, e.Records, formatSize(e.Bytes))
	if e.BytesPerSec == 0 && e.RTT == 0 {
		return head + " · no link estimate yet"
	}
	return fmt.Sprintf("%s · rtt %s · %s · %.2g fail/s", head, formatRTT(e.RTT), formatRate(e.BytesPerSec), e.FailuresPerSec)
}

func formatSize(b int) string {
	switch {
	case b < 1<<10:
		return fmt.Sprintf("%dB", b)
	case b < 1<<20:
		return fmt.Sprintf("%dKiB", b>>10)
	default:
		return trimZero(fmt.Sprintf("%.1f", float64(b)/(1<<20))) + "MiB"
	}
}

func formatRate(bps float64) string {
	switch {
	case bps < 1e3:
		return fmt.Sprintf("%.0fB/s", bps)
	case bps < 1e6:
		return fmt.Sprintf("%.0fKB/s", bps/1e3)
	default:
		return trimZero(fmt.Sprintf("%.1f", bps/1e6)) + "MB/s"
	}
}

func formatRTT(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

func trimZero(s string) string {
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}
