package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeModuleTree writes modules.dep, modules.builtin and modules.alias
// into a temporary directory shaped like Debian's generic kernel.
func writeModuleTree(t *testing.T, dep, builtin, alias string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"modules.dep": dep, "modules.builtin": builtin, "modules.alias": alias} {
		if body == "-" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const genericDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
`

const genericAlias = `alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias fs-ext4 ext4
`

func names(order []moduleLoad) string {
	var s []string
	for _, m := range order {
		n := m.Name
		if m.Optional {
			n += "?"
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

func TestResolveOrdersDependenciesFirst(t *testing.T) {
	idx, err := loadModuleIndex(writeModuleTree(t, genericDep, "kernel/drivers/tty/serial/8250.ko\n", genericAlias))
	if err != nil {
		t.Fatal(err)
	}
	softdeps := func(path string) ([]string, error) {
		if strings.HasSuffix(path, "/ext4.ko") || strings.HasSuffix(path, "/jbd2.ko") {
			return []string{"crypto-crc32c"}, nil
		}
		return nil, nil
	}
	order, err := idx.resolve(bootModules, softdeps)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	// Every module comes after everything modules.dep says it needs.
	for name, deps := range idx.deps {
		if _, loaded := pos[name]; !loaded {
			continue
		}
		for _, d := range deps {
			if pos[d] >= pos[name] {
				t.Errorf("%s loaded before its dependency %s: %s", name, d, names(order))
			}
		}
	}
	if got := names(order); !strings.Contains(got, "crc32c_generic? crc32c_intel? jbd2") {
		t.Errorf("soft dependencies not optional and before jbd2: %s", got)
	}
	if !strings.HasSuffix(names(order), "ext4") {
		t.Errorf("ext4 not last: %s", names(order))
	}
	if len(order) != 14 {
		t.Errorf("%d modules, want 14: %s", len(order), names(order))
	}
	for _, m := range order {
		if m.Name == "crc32c_intel" && m.Path != "kernel/arch/x86/crypto/crc32c-intel.ko" {
			t.Errorf("crc32c_intel path %q", m.Path)
		}
	}
}

func TestResolveSkipsBuiltins(t *testing.T) {
	// Like the cloud kernel: ext4 and crc32c are compiled in.
	builtin := "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\nkernel/crypto/crc32c_generic.ko\n"
	dep := strings.ReplaceAll(genericDep, "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n", "")
	idx, err := loadModuleIndex(writeModuleTree(t, dep, builtin, "-"))
	if err != nil {
		t.Fatal(err)
	}
	order, err := idx.resolve(bootModules, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := names(order)
	want := "virtio_pci_modern_dev virtio virtio_ring virtio_pci virtio_blk failover net_failover virtio_net"
	if got != want {
		t.Errorf("load order\n got %s\nwant %s", got, want)
	}
}

func TestResolveErrors(t *testing.T) {
	idx, err := loadModuleIndex(writeModuleTree(t, "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n", "-", "-"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.resolve([]string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := idx.resolve([]string{"virtio_blk"}, nil); err == nil || !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("missing driver: %v", err)
	}
	if _, err := loadModuleIndex(writeModuleTree(t, "-", "-", "-")); err == nil {
		t.Error("missing modules.dep accepted")
	}
	if _, err := loadModuleIndex(writeModuleTree(t, "no colon here\n", "-", "-")); err == nil {
		t.Error("malformed modules.dep accepted")
	}
}

func TestModuleNames(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"virtio_net.ko.xz":                       "virtio_net",
		"ext4":                                   "ext4",
		"kernel/fs/ext4/ext4.ko.gz":              "ext4",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
	list := string(moduleListFile([]moduleLoad{{Path: "kernel/a.ko.xz"}, {Path: "kernel/b.ko", Optional: true}}))
	if list != "kernel/a.ko required\nkernel/b.ko optional\n" {
		t.Errorf("module list %q", list)
	}
}

func TestReadModuleRejectsUnknownCompression(t *testing.T) {
	_, err := readModule(filepath.Join(t.TempDir(), "x.ko.zst"), "busybox")
	if err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("err = %v", err)
	}
}
