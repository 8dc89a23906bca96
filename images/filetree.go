package images

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// fileTree is a guest file system described in memory: the initramfs and
// the root disk are both built as one, then written as a cpio archive or
// into a staging directory for mke2fs. Paths are relative, slash-separated,
// without a leading slash. All entries are owned by root, and every time
// stamp is the build's fixed epoch, so the output depends on the contents
// alone.
type fileTree struct {
	entries map[string]*treeEntry
}

type treeKind int

const (
	kindDir treeKind = iota
	kindFile
	kindSymlink
	kindCharDev
)

type treeEntry struct {
	kind         treeKind
	perm         uint32 // permission bits, including setuid/setgid/sticky
	data         []byte // file contents
	target       string // symlink target
	major, minor uint32 // device numbers
}

func newFileTree() *fileTree {
	return &fileTree{entries: map[string]*treeEntry{}}
}

// add stores e at p, creating missing parent directories (0755). A later
// add to the same path replaces the earlier one.
func (t *fileTree) add(p string, e *treeEntry) error {
	p = path.Clean(strings.TrimPrefix(p, "/"))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("bad guest path %q", p)
	}
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if old, ok := t.entries[dir]; ok {
			if old.kind != kindDir {
				return fmt.Errorf("guest path %s: %s is not a directory", p, dir)
			}
			continue
		}
		t.entries[dir] = &treeEntry{kind: kindDir, perm: 0o755}
	}
	t.entries[p] = e
	return nil
}

func (t *fileTree) dir(p string, perm uint32) error {
	return t.add(p, &treeEntry{kind: kindDir, perm: perm})
}

func (t *fileTree) file(p string, perm uint32, data []byte) error {
	return t.add(p, &treeEntry{kind: kindFile, perm: perm, data: data})
}

func (t *fileTree) symlink(p, target string) error {
	return t.add(p, &treeEntry{kind: kindSymlink, perm: 0o777, target: target})
}

func (t *fileTree) charDevice(p string, perm, major, minor uint32) error {
	return t.add(p, &treeEntry{kind: kindCharDev, perm: perm, major: major, minor: minor})
}

// paths returns every path in sorted order, which puts each directory
// before its contents (a parent is a prefix of its children).
func (t *fileTree) paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// writeCPIO writes the tree as a newc archive for the kernel to unpack.
func (t *fileTree) writeCPIO(w io.Writer, epoch int64) error {
	c := newNewcWriter(w, epoch)
	for _, p := range t.paths() {
		e := t.entries[p]
		switch e.kind {
		case kindDir:
			c.Dir(p, e.perm)
		case kindFile:
			c.File(p, e.perm, e.data)
		case kindSymlink:
			c.Symlink(p, e.target)
		case kindCharDev:
			c.CharDevice(p, e.perm, e.major, e.minor)
		}
	}
	return c.Close()
}

// writeDir creates the tree under root (which must exist and be empty)
// with exact permissions and every time stamp set to epoch. Device nodes
// are not supported here (mknod needs privileges; the root disk has none).
func (t *fileTree) writeDir(root string, epoch int64) error {
	ps := t.paths()
	for _, p := range ps {
		e := t.entries[p]
		full := filepath.Join(root, filepath.FromSlash(p))
		var err error
		switch e.kind {
		case kindDir:
			err = os.Mkdir(full, 0o700)
		case kindFile:
			err = os.WriteFile(full, e.data, 0o600)
		case kindSymlink:
			err = os.Symlink(e.target, full)
		case kindCharDev:
			err = fmt.Errorf("device nodes are not supported in a staging directory")
		}
		if err != nil {
			return cacheErr(full, err)
		}
		if e.kind != kindSymlink {
			// Chmod, not the create mode, so the umask does not matter.
			if err := unix.Chmod(full, e.perm); err != nil {
				return fmt.Errorf("chmod %s: %w", full, err)
			}
		}
	}
	// Time stamps last, children before parents: creating an entry
	// changes its directory's mtime.
	ts := []unix.Timespec{unix.NsecToTimespec(epoch * 1e9), unix.NsecToTimespec(epoch * 1e9)}
	for i := len(ps) - 1; i >= 0; i-- {
		full := filepath.Join(root, filepath.FromSlash(ps[i]))
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %s: %w", full, err)
		}
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, root, ts, 0); err != nil {
		return fmt.Errorf("set times of %s: %w", root, err)
	}
	return nil
}

// addBusybox puts the static busybox at bin/busybox and a symbolic link to
// it for each applet (bin/sh, sbin/init, usr/bin/wget, ...). applets are
// the paths `busybox --list-full` printed.
func (t *fileTree) addBusybox(binary []byte, applets []string) error {
	if err := t.file("bin/busybox", 0o755, binary); err != nil {
		return err
	}
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		if _, taken := t.entries[a]; taken {
			continue
		}
		if err := t.symlink(a, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}
