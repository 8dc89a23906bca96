package instancetype

import (
	"fmt"
	"path/filepath"
)

// Devices is what accelerators a host has, as far as gureum can tell from
// device nodes. It decides which G, P and F types the host can run.
type Devices struct {
	// NVIDIA lists /dev/nvidia<N> nodes (the proprietary driver).
	NVIDIA []string
	// RenderNodes lists /dev/dri/renderD* nodes: any GPU with a DRM
	// driver that can compute or render without a display.
	RenderNodes []string
	// FPGAs lists FPGA device nodes or classes: Xilinx XDMA
	// (/dev/xdma*), Intel OPAE (/dev/intel-fpga-port.*), and the kernel's
	// FPGA manager class (/sys/class/fpga_manager/*).
	FPGAs []string
}

// DetectDevices looks for accelerators under root ("/" on a real host; a
// temporary tree in tests). It only lists device nodes; passing a device
// through to a guest is not implemented yet, which CanRun says.
func DetectDevices(root string) (Devices, error) {
	var d Devices
	for _, g := range []struct {
		dst     *[]string
		pattern string
	}{
		{&d.NVIDIA, "dev/nvidia[0-9]*"},
		{&d.RenderNodes, "dev/dri/renderD*"},
		{&d.FPGAs, "dev/xdma*"},
		{&d.FPGAs, "dev/intel-fpga-port.*"},
		{&d.FPGAs, "sys/class/fpga_manager/*"},
	} {
		m, err := filepath.Glob(filepath.Join(root, g.pattern))
		if err != nil {
			return Devices{}, fmt.Errorf("look for %s: %w", g.pattern, err)
		}
		*g.dst = append(*g.dst, m...)
	}
	return d, nil
}

// GPUs counts the GPUs found. A card with the NVIDIA driver also has a
// render node, so the larger of the two counts is taken, not their sum.
func (d Devices) GPUs() int {
	return max(len(d.NVIDIA), len(d.RenderNodes))
}

// CanRun says whether a host with these devices can run type t at all,
// and if not, why. It is about the host's hardware, not its free capacity.
func (d Devices) CanRun(t Type) (bool, string) {
	switch t.AcceleratorKind {
	case AcceleratorGPU:
		if d.GPUs() == 0 {
			return false, "no GPU on this host (no /dev/nvidia* device and no /dev/dri render node)"
		}
		if d.GPUs() < t.Accelerators {
			return false, fmt.Sprintf("type needs %d GPUs, this host has %d", t.Accelerators, d.GPUs())
		}
		return false, "GPU passthrough to guests is not supported yet"
	case AcceleratorFPGA:
		if len(d.FPGAs) == 0 {
			return false, "no FPGA on this host (no /dev/xdma*, /dev/intel-fpga-port.* or fpga_manager device)"
		}
		return false, "FPGA passthrough to guests is not supported yet"
	}
	return true, ""
}
