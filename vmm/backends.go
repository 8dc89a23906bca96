package vmm

import (
	"crypto/sha256"
	"fmt"
	"net"

	"gureum/network/tap"
	"gureum/storage"
	"gureum/storage/raw"
)

// backends are the host resources a VM keeps across guest reboots: disk
// files and tap devices. Devices are rebuilt on each boot over them.
type backends struct {
	disks []storage.Disk
	taps  []*tap.Tap
	macs  []net.HardwareAddr
}

func openBackends(cfg Config) (b *backends, err error) {
	b = &backends{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for i, d := range cfg.Disks {
		disk, err := raw.Open(d.Path, d.ReadOnly)
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		b.disks = append(b.disks, disk)
	}
	for i, n := range cfg.Nets {
		t, err := tap.Open(n.Tap)
		if err != nil {
			return nil, fmt.Errorf("net %d: %w", i, err)
		}
		b.taps = append(b.taps, t)
		mac := n.MAC
		if mac == nil {
			mac = stableMAC(n.Tap)
		}
		b.macs = append(b.macs, mac)
	}
	return b, nil
}

// stableMAC derives a locally administered unicast MAC from the tap name,
// so an interface keeps its address across restarts of the VMM.
func stableMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("gureum-net:" + name))
	return net.HardwareAddr{0x52, 0x54, h[0], h[1], h[2], h[3]}
}

func (b *backends) close() {
	for _, d := range b.disks {
		d.Close()
	}
	for _, t := range b.taps {
		t.Close()
	}
	b.disks, b.taps = nil, nil
}
