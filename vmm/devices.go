package vmm

// addDevices builds this boot's devices over the VM's backends and puts
// them on the buses.
func (v *VM) addDevices(m *machine) error {
	return nil
}
