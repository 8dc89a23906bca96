package vmm

import "errors"

// loadGuest writes the kernel, initrd, command line and boot tables into
// guest RAM and returns where the boot vCPU starts.
func (v *VM) loadGuest(m *machine) (entryState, error) {
	return entryState{}, errors.New("kernel loading not wired yet")
}
