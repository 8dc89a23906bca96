package boot

import (
	"errors"
	"fmt"
	"io"
)

// Image is a kernel or initrd file as the loaders read it: random access
// plus a known size. *io.SectionReader, *bytes.Reader and *strings.Reader
// satisfy it; wrap an *os.File with io.NewSectionReader(f, 0, size).
//
// Its content is untrusted: every offset and length taken from it is checked
// against Size before it is used.
type Image interface {
	io.ReaderAt
	Size() int64
}

// maxHeaderRead bounds how much a parser reads in one go for headers and
// tables, so that a corrupt count cannot make the VMM allocate gigabytes.
const maxHeaderRead = 1 << 20

// readExact reads exactly n bytes at off from img into a new buffer. It
// fails, naming what, if the range lies outside the file.
func readExact(img Image, off, n uint64, what string) ([]byte, error) {
	if n > maxHeaderRead {
		return nil, fmt.Errorf("%s: %d bytes is implausibly large", what, n)
	}
	buf := make([]byte, n)
	if err := readInto(img, buf, off, what); err != nil {
		return nil, err
	}
	return buf, nil
}

// readInto fills dst from img at off. dst is usually a slice of guest RAM,
// so file contents go straight to the guest without an intermediate copy.
func readInto(img Image, dst []byte, off uint64, what string) error {
	size := uint64(img.Size())
	n := uint64(len(dst))
	if off > size || n > size-off {
		return fmt.Errorf("%s: range [%#x, +%#x) is beyond the end of the file (%#x bytes): truncated", what, off, n, size)
	}
	got, err := img.ReadAt(dst, int64(off))
	// ReaderAt may report io.EOF together with a complete read at the end.
	if uint64(got) == n && (err == nil || errors.Is(err, io.EOF)) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s: %w", what, err)
}
