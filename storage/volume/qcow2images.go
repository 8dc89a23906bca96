package volume

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gureum/storage"
	"gureum/storage/qcow2"
)

// Qcow2Images is Images done by gureum's own qcow2 code, with no outside
// program.
//
// Without a way to ask the format which clusters a file holds, Rebase and
// Flatten read the whole virtual disk (unallocated clusters read as
// zeroes without touching the host disk, but the comparison still walks
// every byte), so their cost grows with volume size. Create and Grow,
// which a snapshot and a volume creation use, are constant time.
type Qcow2Images struct{}

// scanPiece is how much Rebase and Flatten read at a time: one default
// cluster, so a piece that differs is written whole and allocates exactly
// one cluster.
const scanPiece = 64 << 10

// Create makes the file with qcow2.Create, naming the backing relative to
// the image.
func (Qcow2Images) Create(path string, size int64, backing string) error {
	opts := qcow2.CreateOptions{}
	if backing != "" {
		opts.BackingFile, opts.BackingFormat = relativeBacking(path, backing), "qcow2"
	}
	return qcow2.Create(path, size, opts)
}

// Grow opens the file (and its chain, read-only) and resizes it.
func (Qcow2Images) Grow(path string, size int64) error {
	img, err := qcow2.Open(path, qcow2.Options{})
	if err != nil {
		return err
	}
	if err := img.Resize(size); err != nil {
		img.Close()
		return err
	}
	return img.Close()
}

// Rebase writes a new file on newBacking that holds every piece where
// path's current view differs from newBacking's, then renames it over
// path. The rename is atomic: a crash leaves either the old file (and its
// old chain, which is still there) or the new one, both reading the same
// bytes. A process that had the old file open as a backing keeps reading
// the old inode, which also reads the same bytes.
func (Qcow2Images) Rebase(path, newBacking string) error {
	old, err := storage.Open(path, storage.OpenOptions{ReadOnly: true, Format: "qcow2"})
	if err != nil {
		return err
	}
	defer old.Close()
	var base storage.Disk
	if newBacking != "" {
		if base, err = storage.Open(newBacking, storage.OpenOptions{ReadOnly: true, Format: "qcow2"}); err != nil {
			return err
		}
		defer base.Close()
	}
	tmp := path + ".rebase"
	os.Remove(tmp) // a leftover of an interrupted rebase
	if err := (Qcow2Images{}).Create(tmp, old.Size(), newBacking); err != nil {
		return err
	}
	if err := copyDiffering(tmp, old, base); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rebase %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rebase %s: %w", filepath.Base(path), err)
	}
	return syncDir(filepath.Dir(path))
}

// Flatten copies src's whole view into a new standalone file, skipping
// pieces that are all zero.
func (Qcow2Images) Flatten(src, dst string) error {
	in, err := storage.Open(src, storage.OpenOptions{ReadOnly: true, Format: "qcow2"})
	if err != nil {
		return err
	}
	defer in.Close()
	if err := qcow2.Create(dst, in.Size(), qcow2.CreateOptions{}); err != nil {
		return err
	}
	if err := copyDiffering(dst, in, nil); err != nil {
		return fmt.Errorf("flatten %s: %w", filepath.Base(src), err)
	}
	return nil
}

// copyDiffering writes into the qcow2 file dst every piece of from that
// differs from base (zeroes where base is nil or shorter), then flushes.
func copyDiffering(dst string, from, base storage.Disk) error {
	out, err := qcow2.Open(dst, qcow2.Options{})
	if err != nil {
		return err
	}
	want := make([]byte, scanPiece)
	have := make([]byte, scanPiece)
	size := from.Size()
	for off := int64(0); off < size; off += scanPiece {
		n := min(int64(scanPiece), size-off)
		if _, err := from.ReadAt(want[:n], off); err != nil {
			out.Close()
			return err
		}
		clear(have[:n])
		if base != nil && off < base.Size() {
			m := min(n, base.Size()-off)
			if _, err := base.ReadAt(have[:m], off); err != nil {
				out.Close()
				return err
			}
		}
		if bytes.Equal(want[:n], have[:n]) {
			continue
		}
		if _, err := out.WriteAt(want[:n], off); err != nil {
			out.Close()
			return err
		}
	}
	return errors.Join(out.Flush(), out.Close())
}
