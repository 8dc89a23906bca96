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

func TestModuleName(t *testing.T) {
	for file, want := range map[string]string{
		"kvm-amd.ko":         "kvm_amd",
		"/a/b/nft_ct.ko":     "nft_ct",
		"br_netfilter.ko.xz": "br_netfilter",
		"nft_meta_bridge.ko": "nft_meta_bridge",
	} {
		if got := moduleName(file); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", file, got, want)
		}
	}
}
