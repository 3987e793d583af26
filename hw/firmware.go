package hw

import (
	"fmt"
	"os"

	"github.com/jaypipes/ghw"
)

// deviceTreeSerials are where Linux exposes the device-tree serial-number;
// /proc/device-tree is normally a link to the second.
var deviceTreeSerials = []string{
	"proc/device-tree/serial-number",
	"sys/firmware/devicetree/base/serial-number",
}

// firmware is tier 1: identifiers the board maker burned in. All that are
// real feed the ID together.
func (p *prober) firmware() ([]identifier, error) {
	var ids []identifier
	add := func(source, value string) {
		if !isPlaceholder(value) {
			ids = append(ids, identifier{source, normalize(value)})
		}
	}
	// Without DMI, ghw fills the product, board and chassis serials from the
	// device tree; those must not be counted as DMI, nor four times.
	if fi, err := os.Stat(p.path("sys/class/dmi/id")); err == nil && fi.IsDir() {
		product, err := ghw.Product(p.ghwOpts...)
		if err != nil {
			return nil, fmt.Errorf("cannot read DMI product: %w", err)
		}
		add("dmi.product_uuid", product.UUID)
		add("dmi.product_serial", product.SerialNumber)
		board, err := ghw.Baseboard(p.ghwOpts...)
		if err != nil {
			return nil, fmt.Errorf("cannot read DMI baseboard: %w", err)
		}
		add("dmi.board_serial", board.SerialNumber)
		chassis, err := ghw.Chassis(p.ghwOpts...)
		if err != nil {
			return nil, fmt.Errorf("cannot read DMI chassis: %w", err)
		}
		add("dmi.chassis_serial", chassis.SerialNumber)
	}
	for _, rel := range deviceTreeSerials {
		if v := p.readFile(rel); !isPlaceholder(v) {
			add("devicetree.serial", v)
			break
		}
	}
	return ids, nil
}
