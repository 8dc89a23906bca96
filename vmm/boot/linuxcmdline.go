package boot

import "strings"

// linuxDefaults are kernel parameters a stock Linux kernel needs on this
// machine and that users should not have to know about. Each is added in
// front of the user's command line unless the user's line already sets the
// same parameter, so a user can always override one:
//
//   - console=ttyS0: the only console is the 8250 UART at COM1; without it
//     the kernel writes to a VGA console that does not exist.
//   - reboot=acpi: the machine has hardware-reduced ACPI, which makes Linux
//     assume an EFI machine and try an EFI reset, then the BIOS reset
//     vector in real mode; with neither firmware present the vCPU spins
//     there and the VMM never sees the reboot. reboot=acpi writes the FADT
//     reset register (the i8042 command port, value 0xfe), which the VMM
//     handles.
//   - panic=-1: reboot at once on a kernel panic instead of hanging with a
//     vCPU that looks busy; with --no-reboot that becomes the VMM's exit,
//     so a supervisor sees the crash.
var linuxDefaults = []string{"console=ttyS0", "reboot=acpi", "panic=-1"}

// LinuxCmdline returns the command line a Linux kernel gets for the user's
// line: the defaults the user did not set, then the user's parameters.
func LinuxCmdline(user string) string {
	set := make(map[string]bool)
	for _, word := range strings.Fields(user) {
		if word == "--" {
			break // what follows goes to init, not to the kernel
		}
		key, _, _ := strings.Cut(word, "=")
		set[key] = true
	}
	var words []string
	for _, d := range linuxDefaults {
		key, _, _ := strings.Cut(d, "=")
		if !set[key] {
			words = append(words, d)
		}
	}
	if user = strings.TrimSpace(user); user != "" {
		words = append(words, user)
	}
	return strings.Join(words, " ")
}
