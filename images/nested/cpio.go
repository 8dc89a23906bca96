package nested

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// The Linux kernel unpacks an initramfs from the "newc" cpio format
// (Documentation/driver-api/early-userspace/buffer-format.rst): every entry
// is a 110-byte ASCII header of thirteen 8-digit hex fields after the magic
// "070701", then the NUL-terminated name, padded to a multiple of 4 bytes,
// then the file data, padded the same way. An entry named "TRAILER!!!" ends
// the archive. Our archives are uncompressed: QEMU and gureum-vmm hand the
// bytes to the kernel as they are, and unpacking is then a plain copy, which
// is the fastest thing a TCG-emulated L1 can do.

// Linux file type bits of a cpio mode (from <sys/stat.h>).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// entry is one member of an Initramfs before it is written.
type entry struct {
	mode         uint32 // type bits | permissions
	data         []byte // file contents or symlink target
	source       string // host file to stream instead of data
	major, minor uint32 // device numbers for character devices
}

// Initramfs collects the members of a newc cpio archive and writes them in
// sorted order with zero timestamps and owners, so the same inputs give the
// same bytes. Parent directories are added automatically. It is not safe
// for concurrent use.
type Initramfs struct {
	entries map[string]entry
}

// NewInitramfs returns an empty archive.
func NewInitramfs() *Initramfs {
	return &Initramfs{entries: map[string]entry{}}
}

func (a *Initramfs) add(name string, e entry) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = entry{mode: modeDir | 0o755}
		}
	}
	a.entries[name] = e
}

// Dir adds a directory.
func (a *Initramfs) Dir(name string, perm uint32) { a.add(name, entry{mode: modeDir | perm}) }

// Bytes adds a regular file with the given contents.
func (a *Initramfs) Bytes(name string, perm uint32, data []byte) {
	a.add(name, entry{mode: modeRegular | perm, data: data})
}

// File adds a regular file copied from the host file src when the archive
// is written (large kernels and disk images are streamed, not held).
func (a *Initramfs) File(name string, perm uint32, src string) {
	a.add(name, entry{mode: modeRegular | perm, source: src})
}

// Symlink adds a symbolic link to target.
func (a *Initramfs) Symlink(name, target string) {
	a.add(name, entry{mode: modeSymlink | 0o777, data: []byte(target)})
}

// CharDev adds a character device node, e.g. /dev/console (5, 1), which
// the kernel needs before devtmpfs is mounted to give /init its stdio.
func (a *Initramfs) CharDev(name string, perm, major, minor uint32) {
	a.add(name, entry{mode: modeCharDev | perm, major: major, minor: minor})
}

// WriteFile writes the archive to a new file at dst.
func (a *Initramfs) WriteFile(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := a.Write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs %s: %w", dst, err)
	}
	return nil
}

// Write writes the archive to w.
func (a *Initramfs) Write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	// Sorting puts every directory before its contents ("a" < "a/b").
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		if err := writeEntry(bw, n, a.entries[n], ino); err != nil {
			return fmt.Errorf("initramfs: %s: %w", n, err)
		}
		ino++
	}
	if err := writeHeader(bw, "TRAILER!!!", 0, 0, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	return bw.Flush()
}

func writeEntry(w *bufio.Writer, name string, e entry, ino uint32) error {
	size := int64(len(e.data))
	var src *os.File
	if e.source != "" {
		f, err := os.Open(e.source)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if st.Size() >= 1<<32 {
			return fmt.Errorf("%s is %d bytes, over the 4 GiB a newc entry can hold", e.source, st.Size())
		}
		size, src = st.Size(), f
	}
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	if err := writeHeader(w, name, ino, e.mode, nlink, uint32(size), e.major, e.minor); err != nil {
		return err
	}
	if src != nil {
		n, err := io.Copy(w, src)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s changed size while being archived", e.source)
		}
	} else if _, err := w.Write(e.data); err != nil {
		return err
	}
	return pad4(w, size)
}

func writeHeader(w *bufio.Writer, name string, ino, mode, nlink, size, major, minor uint32) error {
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize,
	// devmajor, devminor, rdevmajor, rdevminor, namesize, check.
	_, err := fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	if err != nil {
		return err
	}
	if _, err := w.WriteString(name + "\x00"); err != nil {
		return err
	}
	return pad4(w, int64(110+len(name)+1))
}

func pad4(w *bufio.Writer, n int64) error {
	_, err := w.Write(make([]byte, (4-n%4)%4))
	return err
}
