// Package storage holds gureum's block storage: the disk interface every
// format implements (raw in storage/raw, qcow2 in storage/qcow2), opening a
// file of either format by its header (Open), and the instance store and
// EBS volumes built on them.
//
// A format implements the small Disk interface; abilities that not every
// format or file has (discard, write-zeroes, resize) are separate
// interfaces that callers find by type assertion. storagetest runs one
// conformance suite against every format.
package storage

import "errors"

// Disk is a virtual block device backed by some file format. Offsets and
// lengths are in bytes and need no alignment. Implementations must be safe
// for concurrent use by many goroutines: the VMM's event loop and the I/O
// workers may call any method at the same time.
type Disk interface {
	// ReadAt fills p from the disk at off. Ranges never written read as
	// zeroes (or as the backing file's bytes). A range that does not lie
	// wholly inside [0, Size()) is an error wrapping ErrOutOfRange.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off, with the same range rule as ReadAt. It
	// returns an error wrapping ErrReadOnly on a read-only disk.
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every write that completed before the call durable: after
	// a crash of the process or the host, a reopen reads it back.
	Flush() error
	// Size is the virtual size in bytes.
	Size() int64
	// ReadOnly reports whether writes are refused.
	ReadOnly() bool
	// Close flushes and releases the file. The disk is unusable afterwards.
	Close() error
}

// Discarder is a Disk that can drop the contents of a range (the guest's
// discard or TRIM), giving the space back to the host where the format
// can. Reads of a discarded range return zeroes, also on a disk with a
// backing file: discard never makes older backing data reappear.
type Discarder interface {
	Discard(off, n int64) error
}

// ZeroWriter is a Disk that can set a range to zeroes without sending
// zero bytes through WriteAt (the guest's write-zeroes). The range may
// stay allocated or not, as the format finds cheaper.
type ZeroWriter interface {
	WriteZeroes(off, n int64) error
}

// Resizer is a Disk whose virtual size can grow. Data already on the disk
// is kept and the new tail reads as zeroes. Shrinking is refused with an
// error wrapping ErrShrink, since a guest's file system may live there.
type Resizer interface {
	Resize(newSize int64) error
}

// Errors shared by every format; match them with errors.Is.
var (
	// ErrReadOnly is returned by writes to a read-only disk.
	ErrReadOnly = errors.New("disk is read-only")
	// ErrOutOfRange is returned for I/O that reaches past the disk's end
	// or starts at a negative offset.
	ErrOutOfRange = errors.New("range outside the disk")
	// ErrShrink is returned by Resize to a size smaller than the current one.
	ErrShrink = errors.New("disks can only grow")
)
