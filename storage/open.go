package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Format is a disk file format known to Open. Formats register themselves
// from their package's init (storage/raw, storage/qcow2), the way image
// decoders register with the standard library's image package; this keeps
// the dependency one way: the formats import storage, never the reverse.
type Format struct {
	// Name is what OpenOptions.Format and backing-format header fields say,
	// e.g. "raw" or "qcow2".
	Name string
	// Probe reports whether a file starting with head (its first 512
	// bytes, fewer if the file is shorter) is in this format. A nil Probe
	// marks the fallback format used when no other format matches (raw).
	Probe func(head []byte) bool
	// Open opens the file.
	Open func(path string, opts OpenOptions) (Disk, error)
}

// BackingResolver opens the backing file that an image names. dir is the
// directory of the image that names it (relative names are relative to
// it), name and format are as written in the image (format may be empty:
// probe). The disk returned must be read-only; the image closes it.
//
// A resolver is where a caller restricts which files an image may pull
// in: an image file is data, and its backing name must not let it read an
// arbitrary host file.
type BackingResolver func(dir, name, format string) (Disk, error)

// OpenOptions says how to open a disk file.
type OpenOptions struct {
	ReadOnly bool
	// Format is a registered format's name, or empty to probe the header.
	// Give it whenever it is known: probing a raw disk that a guest has
	// written a qcow2 header into would let the guest choose a backing file.
	Format string
	// Backing opens backing files. Nil means DefaultBacking.
	Backing BackingResolver
	// depth counts backing files above this one, to stop loops.
	depth int
}

// maxChainDepth bounds backing chains opened by DefaultBacking. A chain
// this deep is a loop or a mistake; real snapshot chains are far shorter.
const maxChainDepth = 1000

var (
	formatsMu sync.RWMutex
	formats   []Format
)

// RegisterFormat makes a format known to Open. It is called from init
// functions; registering a name twice panics, as that is a program bug.
func RegisterFormat(f Format) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	for _, g := range formats {
		if g.Name == f.Name {
			panic("storage: format " + f.Name + " registered twice")
		}
	}
	formats = append(formats, f)
}

// Open opens a disk file in the format opts.Format names, or the format
// its header shows when that is empty. Backing files named by the image
// are opened read-only through opts.Backing.
func Open(path string, opts OpenOptions) (Disk, error) {
	if opts.depth > maxChainDepth {
		return nil, fmt.Errorf("open %s: backing chain deeper than %d files (a loop?)", path, maxChainDepth)
	}
	if opts.Backing == nil {
		depth := opts.depth
		opts.Backing = func(dir, name, format string) (Disk, error) {
			return Open(backingPath(dir, name), OpenOptions{ReadOnly: true, Format: format, depth: depth + 1})
		}
	}
	f, err := pickFormat(path, opts.Format)
	if err != nil {
		return nil, err
	}
	d, err := f.Open(path, opts)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// DefaultBacking opens a backing file relative to the image's directory,
// probing its format when none is given, and follows its own backing
// chain the same way.
func DefaultBacking(dir, name, format string) (Disk, error) {
	return Open(backingPath(dir, name), OpenOptions{ReadOnly: true, Format: format})
}

func backingPath(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// pickFormat finds the format by name, or by probing the file's first
// 512 bytes.
func pickFormat(path, name string) (Format, error) {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	if name != "" {
		for _, f := range formats {
			if f.Name == name {
				return f, nil
			}
		}
		return Format{}, fmt.Errorf("open %s: unknown disk format %q", path, name)
	}
	file, err := os.Open(path)
	if err != nil {
		return Format{}, fmt.Errorf("open disk: %w", err)
	}
	defer file.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(file, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Format{}, fmt.Errorf("probe %s: %w", path, err)
	}
	head = head[:n]
	var fallback *Format
	for i, f := range formats {
		if f.Probe == nil {
			fallback = &formats[i]
			continue
		}
		if f.Probe(head) {
			return f, nil
		}
	}
	if fallback == nil {
		return Format{}, fmt.Errorf("open %s: no format matches and no fallback format is registered", path)
	}
	return *fallback, nil
}
