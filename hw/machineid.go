package hw

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// machineIDAppKey makes the value we derive from /etc/machine-id ours alone,
// as systemd asks of anyone using it (sd_id128_get_machine_app_specific).
const machineIDAppKey = "syncagent hardware-id v1 machine-id"

// machineID is tier 4, the last resort: an HMAC keyed by /etc/machine-id.
// It is not hardware: reinstalling the OS changes it, and boxes cloned from
// one image that was not reset share it.
func (p *prober) machineID() ([]identifier, error) {
	v := normalize(p.readFile("etc/machine-id"))
	key, err := hex.DecodeString(v)
	if err != nil || len(key) != 16 || isPlaceholder(v) {
		return nil, nil
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(machineIDAppKey))
	return []identifier{{"machine-id", hex.EncodeToString(mac.Sum(nil))}}, nil
}
