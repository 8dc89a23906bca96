package vmm

import (
	"fmt"
	"io"
	"os"

	"gureum/vmm/boot"
)

// loadGuest writes the kernel, initrd, command line and boot tables into
// guest RAM and returns the boot vCPU's entry state. The files are read
// again on every boot, so a kernel replaced on disk takes effect at the
// next reboot, as on a real machine.
func (v *VM) loadGuest(m *machine) (*boot.Kernel, error) {
	kf, err := os.Open(v.cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer kf.Close()
	kernel, err := sectionOf(kf)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	opts := boot.Options{Cmdline: v.cfg.Cmdline}
	if v.cfg.Initrd != "" {
		f, err := os.Open(v.cfg.Initrd)
		if err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		defer f.Close()
		if opts.Initrd, err = sectionOf(f); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
	}
	rsdp, err := writeACPI(m, v.cfg.VCPUs)
	if err != nil {
		return nil, fmt.Errorf("ACPI tables: %w", err)
	}
	opts.RSDP = rsdp
	k, err := boot.LoadKernel(m.mem, kernel, opts)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func sectionOf(f *os.File) (*io.SectionReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f, 0, st.Size()), nil
}
