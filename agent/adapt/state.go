package adapt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// stateVersion changes whenever savedState changes meaning; a state of any
// other version is ignored (the sizer simply learns again).
const stateVersion = 1

// stateHalfLife: evidence saved this long ago counts half as much.
const stateHalfLife = 24 * time.Hour

// savedState is what a Sizer persists across restarts. It is this package's
// own format: nothing outside reads it.
type savedState struct {
	Version   int       `json:"version"`
	Saved     time.Time `json:"saved"`
	Budget    float64   `json:"budget"`
	PerRecord float64   `json:"per_record"`
	Fit       linkFit   `json:"fit"`
	Hazard    hazard    `json:"hazard"`
	AllHazard hazard    `json:"all_hazard"`
	Sizes     sizeStats `json:"sizes"`
	MaxOK     float64   `json:"max_ok"`
	Ceiling   float64   `json:"ceiling"`
	CeilingAt time.Time `json:"ceiling_at"`
}

// MarshalState returns what the sizer has learned, to be given to
// RestoreState after a restart.
func (s *Sizer) MarshalState() ([]byte, error) {
	s.mu.Lock()
	st := savedState{
		Version: stateVersion, Saved: s.clock.Now(), Budget: s.budget, PerRecord: s.perRecord,
		Fit: s.fit, Hazard: s.hz, AllHazard: s.allHz, Sizes: s.sizes, MaxOK: s.maxOK, Ceiling: s.ceilingLocked(), CeilingAt: s.ceilingAt,
	}
	s.mu.Unlock()
	return json.Marshal(st)
}

// RestoreState loads a state from MarshalState. A corrupt, foreign or
// old-version state is refused with an error and changes nothing; the sizer
// then learns from scratch. Evidence fades with the state's age (half per
// day), and the budget is clamped to this sizer's Config.
func (s *Sizer) RestoreState(data []byte) error {
	var st savedState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("cannot read sizer state: %w", err)
	}
	if dec.More() {
		return errors.New("cannot read sizer state: trailing data")
	}
	if st.Version != stateVersion {
		return fmt.Errorf("sizer state version %d, want %d", st.Version, stateVersion)
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("sizer state: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	age := s.clock.Now().Sub(st.Saved)
	weight := 1.0
	if age > 0 {
		weight = math.Pow(0.5, float64(age)/float64(stateHalfLife))
	}
	f := st.Fit
	f.W, f.B, f.T, f.BB, f.BT = f.W*weight, f.B*weight, f.T*weight, f.BB*weight, f.BT*weight
	fade := func(h hazard) hazard {
		return hazard{Exposure: h.Exposure * weight, Resets: h.Resets * weight, Hangs: h.Hangs * weight}
	}

	z := st.Sizes
	for i := range sizeBands {
		z.OK[i], z.Failed[i] = z.OK[i]*weight, z.Failed[i]*weight
	}

	s.fit, s.hz, s.allHz, s.sizes = f, fade(st.Hazard), fade(st.AllHazard), z
	s.perRecord, s.maxOK = st.PerRecord, st.MaxOK
	s.ceiling, s.ceilingAt = st.Ceiling, st.CeilingAt
	s.reslice, s.resliceB, s.singleLarge, s.runCount, s.runExposure, s.setAside, s.failRun = 0, 0, false, 0, 0, false, failureRun{}
	if st.Budget > 0 {
		s.budget = s.clampLocked(st.Budget)
	}
	return nil
}

// check refuses numbers no sizer could have saved.
func (st *savedState) check() error {
	nums := []float64{
		st.Budget, st.PerRecord, st.MaxOK, st.Ceiling,
		st.Fit.W, st.Fit.B, st.Fit.T, st.Fit.BB, st.Fit.BT, st.Fit.RTT, st.Fit.PerByte,
		st.Hazard.Exposure, st.Hazard.Resets, st.Hazard.Hangs,
		st.AllHazard.Exposure, st.AllHazard.Resets, st.AllHazard.Hangs,
	}
	nums = append(nums, st.Sizes.OK[:]...)
	nums = append(nums, st.Sizes.Failed[:]...)
	for _, x := range nums {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return fmt.Errorf("impossible value %v", x)
		}
	}
	if st.Budget < 1 {
		return errors.New("no budget")
	}
	return nil
}
