// Package raw is the raw disk format: the file's bytes are the disk's bytes.
// Files are used sparse; discard punches holes.
package raw

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"gureum/storage"
)

// Disk is a raw image file.
type Disk struct {
	f        *os.File
	size     int64
	readOnly bool
}

var _ storage.Disk = (*Disk)(nil)
var _ storage.Discarder = (*Disk)(nil)

// Open opens path as a raw disk.
func Open(path string, readOnly bool) (*Disk, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open raw disk: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open raw disk: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open raw disk %s: not a regular file", path)
	}
	return &Disk{f: f, size: st.Size(), readOnly: readOnly}, nil
}

// ReadAt reads from the disk. Reads past the end are an error.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("read [%d, +%d) beyond disk size %d", off, len(p), d.size)
	}
	return d.f.ReadAt(p, off)
}

// WriteAt writes to the disk. Writes past the end are an error.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, storage.ErrReadOnly
	}
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("write [%d, +%d) beyond disk size %d", off, len(p), d.size)
	}
	return d.f.WriteAt(p, off)
}

// Flush syncs the file's data.
func (d *Disk) Flush() error {
	if d.readOnly {
		return nil
	}
	return unix.Fdatasync(int(d.f.Fd()))
}

// Discard punches a hole over [off, off+n).
func (d *Disk) Discard(off, n int64) error {
	if d.readOnly {
		return storage.ErrReadOnly
	}
	if off < 0 || n < 0 || off+n > d.size {
		return fmt.Errorf("discard [%d, +%d) beyond disk size %d", off, n, d.size)
	}
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// Size is the file's size at open.
func (d *Disk) Size() int64 { return d.size }

// ReadOnly reports whether the disk was opened read-only.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// Close closes the file.
func (d *Disk) Close() error { return d.f.Close() }
