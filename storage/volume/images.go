package volume

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Images is what the store needs from the image format: a handful of
// operations on qcow2 files that form backing chains. Every path is a
// file in the store's layer directory, and backing files are recorded in
// the headers by base name, relative to the image, so the data directory
// can move.
//
// The store calls these with its lock held and never on a file a running
// VMM writes to (it asks the VMM through LiveDrive for those).
type Images interface {
	// Create makes an empty qcow2 file of size bytes. With a backing
	// path, unwritten clusters read from that file instead of as zeroes.
	Create(path string, size int64, backing string) error
	// Grow raises the virtual size of a file no VMM has open.
	Grow(path string, size int64) error
	// Rebase points path at newBacking ("" for none) without changing what
	// path reads: first every cluster where the old and the new chain
	// differ and path has nothing of its own is copied into path, then the
	// header's backing name is rewritten. A crash in between leaves path
	// reading the same bytes, since copied clusters equal what the old
	// backing showed.
	Rebase(path, newBacking string) error
	// Flatten writes a new standalone file dst (no backing) holding the
	// full contents that src's chain reads as.
	Flatten(src, dst string) error
}

// QemuImg is Images done by running qemu-img. It is the reference the
// tests check gureum's own qcow2 code against, and a fallback where that
// code lacks an operation.
type QemuImg struct {
	// Binary is the qemu-img to run; "" means the one on PATH.
	Binary string
}

func (q QemuImg) run(args ...string) error {
	bin := q.Binary
	if bin == "" {
		bin = "qemu-img"
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("qemu-img %s: %w: %s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// Create runs qemu-img create with 64 KiB clusters.
func (q QemuImg) Create(path string, size int64, backing string) error {
	args := []string{"create", "-q", "-f", "qcow2", "-o", "cluster_size=65536"}
	if backing != "" {
		args = append(args, "-b", relativeBacking(path, backing), "-F", "qcow2")
	}
	return q.run(append(args, path, strconv.FormatInt(size, 10))...)
}

// Grow runs qemu-img resize.
func (q QemuImg) Grow(path string, size int64) error {
	return q.run("resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10))
}

// Rebase runs a safe-mode qemu-img rebase, which merges exactly as the
// interface describes.
func (q QemuImg) Rebase(path, newBacking string) error {
	args := []string{"rebase", "-q", "-f", "qcow2"}
	if newBacking == "" {
		args = append(args, "-b", "")
	} else {
		args = append(args, "-b", relativeBacking(path, newBacking), "-F", "qcow2")
	}
	// qemu-img resolves a relative -b against the image's directory.
	return q.run(append(args, path)...)
}

// Flatten runs qemu-img convert to a new qcow2 file; all-zero clusters
// stay unallocated.
func (q QemuImg) Flatten(src, dst string) error {
	return q.run("convert", "-q", "-f", "qcow2", "-O", "qcow2", "-o", "cluster_size=65536", src, dst)
}

// relativeBacking names backing relative to image's directory when both
// live in the same one, which is always the case in a store.
func relativeBacking(image, backing string) string {
	if filepath.Dir(image) == filepath.Dir(backing) {
		return filepath.Base(backing)
	}
	return backing
}

// allocatedBytes is what a layer file takes on the host: its allocated
// blocks, so holes do not count. For a snapshot's file this is the
// incremental size: the clusters written since the previous snapshot plus
// a little metadata.
func allocatedBytes(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("allocated size: %w", err)
	}
	return blocksOf(st) * 512, nil
}
