// Package storage holds gureum's block storage: the disk interface every
// format implements, the formats themselves (raw; qcow2 to come), and the
// instance store and EBS volumes built on them.
package storage

import "errors"

// Disk is a virtual block device backed by some file format. Offsets and
// lengths are in bytes. Implementations must be safe for concurrent use.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Flush makes every completed write durable.
	Flush() error
	// Size is the virtual size in bytes.
	Size() int64
	// ReadOnly reports whether writes are refused.
	ReadOnly() bool
	Close() error
}

// Discarder is a Disk that can drop the contents of a range (the guest's
// discard or TRIM). Reads of a discarded range return zeroes.
type Discarder interface {
	Discard(off, n int64) error
}

// ErrReadOnly is returned by writes to a read-only disk.
var ErrReadOnly = errors.New("disk is read-only")
