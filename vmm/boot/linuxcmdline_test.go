package boot

import "testing"

func TestLinuxCmdline(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"", "console=ttyS0 reboot=acpi panic=-1"},
		{"quiet", "console=ttyS0 reboot=acpi panic=-1 quiet"},
		{"console=hvc0 panic=10", "reboot=acpi console=hvc0 panic=10"},
		{"reboot=k root=/dev/vda", "console=ttyS0 panic=-1 reboot=k root=/dev/vda"},
		// Words after "--" belong to init and do not count as set.
		{"-- console=x", "console=ttyS0 reboot=acpi panic=-1 -- console=x"},
	} {
		if got := LinuxCmdline(tc.user); got != tc.want {
			t.Errorf("LinuxCmdline(%q) = %q, want %q", tc.user, got, tc.want)
		}
	}
}
