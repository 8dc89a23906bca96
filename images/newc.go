package images

import (
	"fmt"
	"io"
)

// The Linux initramfs is a cpio archive in the "newc" format (magic
// "070701"): for each file a 110-byte ASCII header of thirteen 8-digit hex
// fields, the NUL-terminated name, padding to a multiple of 4, the file's
// data, padding to a multiple of 4 again. The archive ends with an entry
// named "TRAILER!!!". The kernel (init/initramfs.c) unpacks it into the
// initial tmpfs before running /init.
//
// We write it ourselves rather than with github.com/cavaliergopher/cpio
// (v1.0.1): that writer always leaves rdevmajor/rdevminor zero, so it cannot
// make the /dev/console character device that the kernel opens as init's
// stdin, stdout and stderr, and it changes a package-level magic value when
// a checksum is set. newc is small enough to write in a page.

// cpio file type bits, the same as the st_mode bits of stat(2).
const (
	cpioTypeDir     = 0o040000
	cpioTypeRegular = 0o100000
	cpioTypeSymlink = 0o120000
	cpioTypeChar    = 0o020000
)

// newcWriter writes a newc archive in the order its methods are called.
// Inode numbers are assigned sequentially and every time stamp is the fixed
// mtime, so the same calls give the same bytes. Not safe for concurrent use.
type newcWriter struct {
	w     io.Writer
	mtime int64
	inode uint32
	n     int64 // bytes written so far, for padding
	err   error // first write error; later calls do nothing
}

func newNewcWriter(w io.Writer, mtime int64) *newcWriter {
	return &newcWriter{w: w, mtime: mtime}
}

// Dir adds a directory. Parents must have been added before.
func (c *newcWriter) Dir(name string, perm uint32) {
	c.entry(name, cpioTypeDir|perm, 2, 0, 0, nil)
}

// File adds a regular file with the given contents.
func (c *newcWriter) File(name string, perm uint32, data []byte) {
	c.entry(name, cpioTypeRegular|perm, 1, 0, 0, data)
}

// Symlink adds a symbolic link; newc stores the target as the file's data.
func (c *newcWriter) Symlink(name, target string) {
	c.entry(name, cpioTypeSymlink|0o777, 1, 0, 0, []byte(target))
}

// CharDevice adds a character device node with the given major and minor.
func (c *newcWriter) CharDevice(name string, perm, major, minor uint32) {
	c.entry(name, cpioTypeChar|perm, 1, major, minor, nil)
}

// Close writes the trailer entry and returns the first error met.
func (c *newcWriter) Close() error {
	c.entry("TRAILER!!!", 0, 1, 0, 0, nil)
	return c.err
}

func (c *newcWriter) entry(name string, mode, nlink, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	ino := uint32(0)
	if name != "TRAILER!!!" {
		c.inode++
		ino = c.inode
	}
	mtime := c.mtime
	if name == "TRAILER!!!" {
		mtime = 0
	}
	// Fields: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with the NUL), check (0).
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, uint32(mtime), len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *newcWriter) write(b []byte) {
	if c.err != nil || len(b) == 0 {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil {
		c.err = fmt.Errorf("write cpio archive: %w", err)
	}
}

func (c *newcWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
