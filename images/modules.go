package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel modules. A Debian kernel builds most drivers as loadable modules
// (.ko files under /lib/modules/RELEASE/kernel/). A module can use symbols
// that other modules export, so those must be loaded first. depmod records
// this in modules.dep, one line per module:
//
//	kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/net/core/failover.ko ...
//
// (the module's path, then every module it needs, directly or not). Debian
// ships no modules.dep in the package: its postinst runs depmod on install.
// We run depmod from the extracted busybox on the extracted tree instead
// (see runDepmod). Three more files matter:
//   - modules.builtin lists the drivers compiled into the kernel image; those
//     need no loading (the cloud kernel has ext4 built in, the generic one
//     does not).
//   - modules.alias maps other names to modules ("alias crypto-crc32c
//     crc32c_generic").
//   - a module's own .modinfo ELF section may name soft dependencies
//     ("softdep=pre: crypto-crc32c"): modules it needs at run time without
//     linking against them (ext4 needs some crc32c implementation).

// moduleIndex is what we know of one kernel's modules.
type moduleIndex struct {
	root    string              // the extracted /lib/modules/RELEASE
	path    map[string]string   // module name → path relative to root
	deps    map[string][]string // module name → names of the modules it needs
	builtin map[string]bool     // names of modules compiled into the kernel
	alias   map[string][]string // alias → module names (sorted)
}

// moduleLoad is one module to load at boot, in order. Optional modules are
// alternatives offered for a soft dependency; they may fail to load (a CPU
// without SSE4.2 refuses crc32c-intel) without failing the boot.
type moduleLoad struct {
	Name     string
	Path     string // relative to /lib/modules/RELEASE
	Optional bool
}

// moduleName turns a module's file name or a name written either way into
// the kernel's form: "crc32c-intel.ko.xz" → "crc32c_intel".
func moduleName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// loadModuleIndex reads modules.dep, modules.builtin and modules.alias from
// root (an extracted /lib/modules/RELEASE). modules.dep must exist;
// modules.builtin and modules.alias may be missing.
func loadModuleIndex(root string) (*moduleIndex, error) {
	idx := &moduleIndex{
		root:    root,
		path:    map[string]string{},
		deps:    map[string][]string{},
		builtin: map[string]bool{},
		alias:   map[string][]string{},
	}
	dep, err := os.ReadFile(filepath.Join(root, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	for i, line := range strings.Split(string(dep), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, needs, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s line %d: no colon: %q", filepath.Join(root, "modules.dep"), i+1, line)
		}
		name := moduleName(mod)
		idx.path[name] = mod
		for _, n := range strings.Fields(needs) {
			idx.deps[name] = append(idx.deps[name], moduleName(n))
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			idx.builtin[moduleName(line)] = true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "modules.alias")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "alias" {
				idx.alias[f[1]] = append(idx.alias[f[1]], moduleName(f[2]))
			}
		}
		for k := range idx.alias {
			sort.Strings(idx.alias[k])
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read modules.alias: %w", err)
	}
	return idx, nil
}

// resolve returns the modules to load for the wanted drivers, each after
// everything it needs: hard dependencies from modules.dep, and "pre" soft
// dependencies (read by softdeps) as optional modules. Built-in drivers are
// skipped. A wanted driver that is neither built in nor a module is an
// error: the kernel cannot drive the device at all.
func (idx *moduleIndex) resolve(wanted []string, softdeps func(path string) ([]string, error)) ([]moduleLoad, error) {
	var order []moduleLoad
	seen := map[string]bool{}
	var visit func(name string, optional bool, chain []string) error
	visit = func(name string, optional bool, chain []string) error {
		if seen[name] || idx.builtin[name] {
			return nil
		}
		for _, c := range chain {
			if c == name {
				return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " → "))
			}
		}
		chain = append(chain, name)
		path, ok := idx.path[name]
		if !ok {
			if optional {
				return nil
			}
			return fmt.Errorf("module %s is neither built into the kernel nor listed in modules.dep", name)
		}
		if softdeps != nil {
			pre, err := softdeps(path)
			if err != nil {
				return err
			}
			for _, s := range pre {
				for _, alt := range idx.candidates(s) {
					if err := visit(alt, true, chain); err != nil {
						return err
					}
				}
			}
		}
		// modules.dep lists the full closure; visiting each one still
		// orders them correctly among themselves.
		for _, d := range idx.deps[name] {
			if err := visit(d, optional, chain); err != nil {
				return err
			}
		}
		if seen[name] {
			return nil
		}
		seen[name] = true
		order = append(order, moduleLoad{Name: name, Path: path, Optional: optional})
		return nil
	}
	for _, w := range wanted {
		if err := visit(moduleName(w), false, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// candidates lists the modules that provide name: the module of that name,
// or every module with it as an alias. Empty when name is built in.
func (idx *moduleIndex) candidates(name string) []string {
	n := moduleName(name)
	if idx.builtin[n] {
		return nil
	}
	if _, ok := idx.path[n]; ok {
		return []string{n}
	}
	var out []string
	for _, m := range idx.alias[name] {
		if idx.builtin[m] {
			return nil // a built-in driver already provides it
		}
		out = append(out, m)
	}
	return out
}

// moduleSoftdepsPre reads the "softdep=pre: a b post: c" entries from a
// module's .modinfo section and returns the "pre" names.
// busybox decompresses .ko.xz modules (see readModule).
func moduleSoftdepsPre(file, busybox string) ([]string, error) {
	data, err := readModule(file, busybox)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", file, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: read .modinfo: %w", file, err)
	}
	var pre []string
	for _, kv := range bytes.Split(info, []byte{0}) {
		v, ok := strings.CutPrefix(string(kv), "softdep=")
		if !ok {
			continue
		}
		inPre := false
		for _, w := range strings.Fields(v) {
			switch w {
			case "pre:":
				inPre = true
			case "post:":
				inPre = false
			default:
				if inPre {
					pre = append(pre, w)
				}
			}
		}
	}
	return pre, nil
}

// readModule returns a module's ELF bytes, decompressing .ko.gz with the
// standard library and .ko.xz with the extracted busybox's xz (Go has no xz
// decoder in its standard library). Debian 12 kernels ship plain .ko files
// (CONFIG_MODULE_COMPRESS_NONE); later kernels compress them.
func readModule(file, busybox string) ([]byte, error) {
	switch {
	case strings.HasSuffix(file, ".ko"):
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return b, nil
	case strings.HasSuffix(file, ".ko.gz"):
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", file, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", file, err)
		}
		return b, nil
	case strings.HasSuffix(file, ".ko.xz"):
		var out, errb bytes.Buffer
		cmd := exec.Command(busybox, "xz", "-d", "-c", file)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("decompress module %s: %w: %s", file, err, strings.TrimSpace(errb.String()))
		}
		return out.Bytes(), nil
	}
	return nil, fmt.Errorf("module %s: unsupported compression (only .ko, .ko.gz and .ko.xz)", file)
}

// runDepmod writes modules.dep (and modules.alias) for the kernel tree
// extracted under dir, with busybox's depmod: the package ships none.
func runDepmod(busybox, dir, release string) error {
	var errb bytes.Buffer
	cmd := exec.Command(busybox, "depmod", "-b", dir, release)
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("depmod %s: %w: %s", release, err, strings.TrimSpace(errb.String()))
	}
	return nil
}

// moduleListFile renders the load order for the initramfs's /init: one
// "PATH required|optional" line per module. Compressed modules are stored
// decompressed, so their paths lose the compression suffix.
func moduleListFile(order []moduleLoad) []byte {
	var b strings.Builder
	for _, m := range order {
		kind := "required"
		if m.Optional {
			kind = "optional"
		}
		fmt.Fprintf(&b, "%s %s\n", storedModulePath(m.Path), kind)
	}
	return []byte(b.String())
}

// storedModulePath is where a module goes in the initramfs, relative to
// /lib/modules/RELEASE: its modules.dep path without compression suffix.
func storedModulePath(p string) string {
	for _, ext := range []string{".xz", ".gz"} {
		p = strings.TrimSuffix(p, ext)
	}
	return p
}
