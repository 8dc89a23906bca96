package nested

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// A loadable kernel module (.ko) is an ELF relocatable object. Its
// ".modinfo" section is a list of NUL-terminated "key=value" strings written
// by modpost at build time; "depends=" names the modules whose symbols it
// uses, comma separated. Debian's packages do not ship modules.dep (the
// postinst runs depmod), so we read the dependencies from the modules
// themselves: the same information depmod would write, with no host tool.

// ModuleSet indexes the modules of one kernel tree by module name.
type ModuleSet struct {
	dir   string            // .../lib/modules/VERSION
	paths map[string]string // normalized name → path of the .ko
}

// normalizeModule turns a module or file name into the kernel's canonical
// module name: no directory or .ko suffix, dashes as underscores
// (kvm-amd.ko is the module kvm_amd).
func normalizeModule(name string) string {
	name = filepath.Base(name)
	name = strings.TrimSuffix(name, ".ko")
	return strings.ReplaceAll(name, "-", "_")
}

// OpenModules indexes every .ko under dir (a lib/modules/VERSION folder).
func OpenModules(dir string) (*ModuleSet, error) {
	m := &ModuleSet{dir: dir, paths: map[string]string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			m.paths[normalizeModule(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", dir, err)
	}
	if len(m.paths) == 0 {
		return nil, fmt.Errorf("no .ko modules under %s (compressed modules are not supported)", dir)
	}
	return m, nil
}

// Builtin reports whether the kernel has the module compiled in, according
// to modules.builtin (then there is nothing to load).
func (m *ModuleSet) Builtin(name string) bool {
	data, err := readFileLimited(filepath.Join(m.dir, "modules.builtin"), 16<<20)
	if err != nil {
		return false
	}
	want := normalizeModule(name)
	for _, l := range strings.Split(string(data), "\n") {
		if normalizeModule(l) == want {
			return true
		}
	}
	return false
}

// Has reports whether the module exists as a loadable .ko.
func (m *ModuleSet) Has(name string) bool {
	_, ok := m.paths[normalizeModule(name)]
	return ok
}

// LoadOrder returns the files to insmod, dependencies first, so that
// loading them in order satisfies every module's "depends=". Built-in
// modules are skipped; a module that is neither built in nor present is an
// error naming it.
func (m *ModuleSet) LoadOrder(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		name = normalizeModule(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle through %s", name)
		case 2:
			return nil
		}
		p, ok := m.paths[name]
		if !ok {
			if m.Builtin(name) {
				state[name] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) not found under %s", name, from, m.dir)
			}
			return fmt.Errorf("module %s not found under %s", name, m.dir)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
