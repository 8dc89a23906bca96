package nested

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// A raw disk image is mostly zeros: the default image's 256 MiB root disk
// holds about 2.5 MiB of data (the journal mke2fs writes is zeros too).
// On disk that costs nothing, because the file is sparse: the zero ranges
// are holes with no blocks behind them. An initramfs has no holes, though,
// so putting the image into L1's initramfs as it is would copy 256 MiB
// through QEMU's emulated CPU at every run. A packed disk keeps only the
// data:
//
//	"gureum-packed-disk-1\n"        magic
//	size    uint64 little endian    length of the image
//	then runs of data, in increasing offset order, not overlapping:
//	offset  uint64, length uint64, length bytes
//	and a final run of length 0 (with offset = size)
//
// Unpacking writes the runs at their offsets into a file of that size, so
// the ranges in between stay holes and read back as zeros, as they did in
// the original.

const packedMagic = "gureum-packed-disk-1\n"

// packBlock is the unit in which zeros are found: a block of this many
// bytes that is all zeros is left out.
const packBlock = 64 << 10

// PackDisk writes the raw image src to dst in the packed form above.
func PackDisk(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("pack disk: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("pack disk: %w", err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("pack disk: %w", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	err = packRuns(in, st.Size(), w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("pack disk %s into %s: %w", src, dst, err)
	}
	return nil
}

// packRuns reads size bytes of in and writes the header, one run per
// stretch of non-zero blocks, and the final empty run.
func packRuns(in io.ReaderAt, size int64, w io.Writer) error {
	if _, err := io.WriteString(w, packedMagic); err != nil {
		return err
	}
	if err := binary.Write(w, binary.LittleEndian, uint64(size)); err != nil {
		return err
	}
	zeros := make([]byte, packBlock)
	var run []byte
	runStart := int64(0)
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		hdr := [2]uint64{uint64(runStart), uint64(len(run))}
		if err := binary.Write(w, binary.LittleEndian, hdr); err != nil {
			return err
		}
		_, err := w.Write(run)
		run = run[:0]
		return err
	}
	buf := make([]byte, packBlock)
	for off := int64(0); off < size; off += packBlock {
		n, err := in.ReadAt(buf, off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
			return err
		}
		block := buf[:n]
		if bytes.Equal(block, zeros[:n]) {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if len(run) == 0 {
			runStart = off
		}
		run = append(run, block...)
	}
	if err := flush(); err != nil {
		return err
	}
	return binary.Write(w, binary.LittleEndian, [2]uint64{uint64(size), 0})
}

// CopyDisk makes dst a fresh copy of the disk image src, which is either
// packed (PackDisk) or raw. Either way dst is a raw image that keeps src's
// zero ranges as holes, so a copy costs only the data it holds.
func CopyDisk(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	magic := make([]byte, len(packedMagic))
	_, err = io.ReadFull(in, magic)
	if err == nil && string(magic) == packedMagic {
		err = unpackRuns(bufio.NewReaderSize(in, 1<<20), out)
	} else {
		err = copySparse(in, out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy disk %s to %s: %w", src, dst, err)
	}
	return nil
}

// unpackRuns reads a packed disk after its magic and writes it to out.
func unpackRuns(r io.Reader, out *os.File) error {
	var size uint64
	if err := binary.Read(r, binary.LittleEndian, &size); err != nil {
		return fmt.Errorf("packed disk header: %w", err)
	}
	if size > 1<<40 {
		return fmt.Errorf("packed disk claims %d bytes", size)
	}
	if err := out.Truncate(int64(size)); err != nil {
		return err
	}
	next := uint64(0) // runs must not go backwards or overlap
	for {
		var hdr [2]uint64
		if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
			return fmt.Errorf("packed disk run header: %w", err)
		}
		off, n := hdr[0], hdr[1]
		if n == 0 {
			return nil
		}
		if off < next || off > size || n > size-off {
			return fmt.Errorf("packed disk run of %d bytes at %d is outside the %d-byte image or out of order", n, off, size)
		}
		if _, err := out.Seek(int64(off), io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, r, int64(n)); err != nil {
			return fmt.Errorf("packed disk run at %d: %w", off, err)
		}
		next = off + n
	}
}

// copySparse copies a raw image, skipping blocks of zeros (they become
// holes: the file is sized first and only data is written).
func copySparse(in *os.File, out *os.File) error {
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := out.Truncate(st.Size()); err != nil {
		return err
	}
	zeros := make([]byte, packBlock)
	buf := make([]byte, packBlock)
	for off := int64(0); off < st.Size(); off += packBlock {
		n, err := in.ReadAt(buf, off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == st.Size()) {
			return err
		}
		if bytes.Equal(buf[:n], zeros[:n]) {
			continue
		}
		if _, err := out.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}
