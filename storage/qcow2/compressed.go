package qcow2

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
)

// A compressed cluster's L2 entry packs two numbers below bit 62: the
// host byte offset of the compressed data in the low x bits, where
// x = 62 - (cluster_bits - 8), and above it the number of 512-byte
// sectors the data occupies beyond the first one. The data is a raw
// deflate stream (no zlib header) that inflates to exactly one cluster.
// Compressed data need not be cluster aligned, and several compressed
// clusters may share a host cluster; each counts one reference on every
// host cluster its bytes touch.

// compressedRange returns the host offset and byte length of a
// compressed cluster's data.
func (img *Image) compressedRange(ent uint64) (off, length uint64) {
	x := 62 - (img.clusterBits - 8)
	off = ent & (1<<x - 1)
	sectors := (ent&(1<<62-1))>>x + 1
	length = sectors*512 - off&511
	return off, length
}

// compressedClusters returns the first host cluster a compressed cluster's
// data touches and how many.
func (img *Image) compressedClusters(ent uint64) (first, n uint64) {
	off, length := img.compressedRange(ent)
	first = off >> img.clusterBits
	last := (off + length - 1) >> img.clusterBits
	return first, last - first + 1
}

// readCompressed inflates the compressed cluster ent names.
func (img *Image) readCompressed(ent uint64) ([]byte, error) {
	off, length := img.compressedRange(ent)
	in := make([]byte, length)
	// The last sector may reach past the file's end: QEMU does not pad it.
	n, err := img.f.ReadAt(in, int64(off))
	if n == 0 && err != nil {
		return nil, fmt.Errorf("read compressed cluster at %#x: %w", off, err)
	}
	out := make([]byte, img.clusterSize)
	r := flate.NewReader(bytes.NewReader(in[:n]))
	defer r.Close()
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("inflate compressed cluster at %#x: %w", off, err)
	}
	return out, nil
}
