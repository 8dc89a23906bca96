package nested

import "testing"

func TestModuleLoadList(t *testing.T) {
	got := moduleLoadList([]string{
		"/cache/lib/modules/6.1.0-56-cloud-amd64/kernel/arch/x86/kvm/kvm.ko",
		"/cache/lib/modules/6.1.0-56-cloud-amd64/kernel/arch/x86/kvm/kvm-amd.ko",
		"/cache/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/net/tun.ko",
	})
	want := "kvm.ko\nkvm-amd.ko npt=0\ntun.ko\n"
	if got != want {
		t.Errorf("modules.load:\n%s\nwant:\n%s", got, want)
	}
}
