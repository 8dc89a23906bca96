// Package raw is the raw disk format: the file's bytes are the disk's bytes.
//
// Files are used sparse: regions never written are holes that take no
// space on the host and read as zeroes, discard punches new holes
// (fallocate PUNCH_HOLE), and growing the disk only moves the file's end.
package raw

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"gureum/storage"
)

// Disk is a raw image file. ReadAt and WriteAt go straight to the file
// with pread/pwrite, which are safe from many goroutines at once; mu only
// guards size against a concurrent Resize.
type Disk struct {
	f        *os.File
	readOnly bool

	mu   sync.RWMutex
	size int64 // guarded by mu
}

var (
	_ storage.Disk       = (*Disk)(nil)
	_ storage.Discarder  = (*Disk)(nil)
	_ storage.ZeroWriter = (*Disk)(nil)
	_ storage.Resizer    = (*Disk)(nil)
)

// init registers raw as the fallback format of storage.Open: a file that
// no other format recognises is raw, since raw has no header to probe.
func init() {
	storage.RegisterFormat(storage.Format{
		Name: "raw",
		Open: func(path string, opts storage.OpenOptions) (storage.Disk, error) {
			return Open(path, opts.ReadOnly)
		},
	})
}

// Create makes a new sparse raw file of size bytes. It fails if path exists.
func Create(path string, size int64) error {
	if size < 0 {
		return fmt.Errorf("create raw disk %s: negative size %d", path, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create raw disk: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create raw disk %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create raw disk %s: %w", path, err)
	}
	return nil
}

// Open opens path as a raw disk. The virtual size is the file's size.
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

// checkRange returns an error wrapping storage.ErrOutOfRange unless
// [off, off+n) lies inside the disk.
func (d *Disk) checkRange(what string, off, n int64) error {
	d.mu.RLock()
	size := d.size
	d.mu.RUnlock()
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%s [%d, +%d) of a %d-byte disk: %w", what, off, n, size, storage.ErrOutOfRange)
	}
	return nil
}

// ReadAt reads from the disk. Holes read as zeroes.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if err := d.checkRange("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := d.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("read raw disk: %w", err)
	}
	return n, nil
}

// WriteAt writes to the disk.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, storage.ErrReadOnly
	}
	if err := d.checkRange("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("write raw disk: %w", err)
	}
	return n, nil
}

// Flush syncs the file's data (fdatasync: the size is data here too).
func (d *Disk) Flush() error {
	if d.readOnly {
		return nil
	}
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("flush raw disk: %w", err)
	}
	return nil
}

// Discard punches a hole over [off, off+n): the host frees the blocks and
// the range reads as zeroes.
func (d *Disk) Discard(off, n int64) error {
	if d.readOnly {
		return storage.ErrReadOnly
	}
	if err := d.checkRange("discard", off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("discard raw disk: %w", err)
	}
	return nil
}

// WriteZeroes zeroes [off, off+n). A hole is the cheapest zero range, so
// this is a discard.
func (d *Disk) WriteZeroes(off, n int64) error { return d.Discard(off, n) }

// Resize grows the file to newSize bytes; the new tail is a hole.
func (d *Disk) Resize(newSize int64) error {
	if d.readOnly {
		return storage.ErrReadOnly
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if newSize < d.size {
		return fmt.Errorf("resize raw disk from %d to %d bytes: %w", d.size, newSize, storage.ErrShrink)
	}
	if err := d.f.Truncate(newSize); err != nil {
		return fmt.Errorf("resize raw disk: %w", err)
	}
	d.size = newSize
	return nil
}

// Size is the disk's current virtual size.
func (d *Disk) Size() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.size
}

// ReadOnly reports whether the disk was opened read-only.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// Close closes the file. Writes already went to the file, so nothing is
// lost; durability across a host crash still needs Flush.
func (d *Disk) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("close raw disk: %w", err)
	}
	return nil
}
