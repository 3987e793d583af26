package hw

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"slices"

	"github.com/jaypipes/ghw"
)

// placeholderMACs are universally administered addresses that cheap boards
// and boot loaders ship on every unit.
var placeholderMACs = map[string]bool{
	"00:11:22:33:44:55": true,
	"00:01:02:03:04:05": true,
}

// universalMAC returns s normalized if it is a unicast, universally
// administered EUI-48 that is not a known placeholder; ok is false otherwise.
// Locally administered addresses (bit 0x02 of the first octet) are made up
// by software: VMs, containers, bonds, randomising Wi-Fi.
func universalMAC(s string) (mac string, ok bool) {
	hw, err := net.ParseMAC(normalize(s))
	if err != nil || len(hw) != 6 {
		return "", false
	}
	if hw[0]&0x01 != 0 || hw[0]&0x02 != 0 || bytes.Count(hw, []byte{0}) == len(hw) {
		return "", false
	}
	if placeholderMACs[hw.String()] {
		return "", false
	}
	return hw.String(), true
}

// nic is tier 2: the MAC of one on-board NIC. ghw already drops NICs whose
// addr_assign_type is not 0 (random, stolen or set by software).
//
// One NIC, not all: with all of them, adding a PCIe card, a driver failing to
// load or a port enslaved to a bond would change the ID. The one chosen is
// wired before wireless (Wi-Fi gets disabled in config more often than
// Ethernet), then first in bus order, which is where on-board controllers
// usually sit.
func (p *prober) nic() ([]identifier, error) {
	info, err := ghw.Network(p.ghwOpts...)
	if err != nil {
		return nil, fmt.Errorf("cannot list NICs: %w", err)
	}
	type candidate struct {
		mac, device string
		wireless    bool
	}
	var candidates []candidate
	for _, n := range info.NICs {
		mac, ok := universalMAC(n.MACAddress)
		if !ok || n.IsVirtual {
			continue
		}
		class := "sys/class/net/" + n.Name
		device := p.linkTarget(class)
		if device == "" || isVirtualDevice(device) || onUSB(device) || !p.exists(class+"/device") {
			continue
		}
		wireless := p.exists(class+"/wireless") || p.exists(class+"/phy80211")
		candidates = append(candidates, candidate{mac, device, wireless})
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	chosen := slices.MinFunc(candidates, func(a, b candidate) int {
		if a.wireless != b.wireless {
			if a.wireless {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.device, b.device), cmp.Compare(a.mac, b.mac))
	})
	return []identifier{{"nic", chosen.mac}}, nil
}
