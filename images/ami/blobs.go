package ami

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gureum/api"
)

// Kernels and initramfs files are stored by content: blobs/<sha256 hex>.
// Two images of the same kernel share one file, a file never changes
// once written (it is renamed into place whole), and an image names
// exactly the bytes it was registered with. Blobs are not removed when
// images are deregistered: instances launched from an image keep booting
// its kernel after it is gone, as in EC2.

// BlobPath is the file holding the blob with this digest, for the VMM's
// --kernel and --initrd. A digest that is not 64 hex digits gives "".
func (r *Registry) BlobPath(digest string) string {
	if len(digest) != sha256.Size*2 || !isLowerHex(digest) {
		return ""
	}
	return filepath.Join(r.blobs, digest)
}

// BootFiles returns the kernel and initramfs paths of a boot recipe
// (initramfs "" when it has none).
func (r *Registry) BootFiles(b Boot) (kernel, initramfs string) {
	kernel = r.BlobPath(b.Kernel)
	if b.Initramfs != "" {
		initramfs = r.BlobPath(b.Initramfs)
	}
	return kernel, initramfs
}

func (r *Registry) hasBlob(digest string) bool {
	p := r.BlobPath(digest)
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

// storeBlob copies a host file into the blob directory and returns its
// digest. The copy is hashed as it is written to a temporary file, synced,
// then renamed to its digest: a crash leaves a stray temporary file at
// worst, never a blob with the wrong contents.
func (r *Registry) storeBlob(path string) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Cannot read '%s': %v", path, err)
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", api.Errorf(api.CodeInvalidParameterValue, "'%s' is not a regular file.", path)
	}
	if err := os.MkdirAll(r.blobs, 0o755); err != nil {
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(r.blobs, ".incoming-*")
	if err != nil {
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if r.hasBlob(digest) {
		return digest, nil
	}
	if err := os.Rename(tmp.Name(), r.BlobPath(digest)); err != nil {
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	if d, err := os.Open(r.blobs); err == nil {
		d.Sync()
		d.Close()
	}
	return digest, nil
}

// checkBootMode reads the kernel's header and returns its boot mode: an
// ELF file is booted through its PVH entry, a file with the "HdrS" magic
// of the Linux setup header at 0x202 with the 64-bit boot protocol
// (docs/boot.md). A requested mode must match the file.
func checkBootMode(kernelPath, requested string) (string, error) {
	f, err := os.Open(kernelPath)
	if err != nil {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Cannot read kernel '%s': %v", kernelPath, err)
	}
	defer f.Close()
	head := make([]byte, 0x206)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	var mode string
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		mode = api.BootModePVH
	case len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS":
		mode = api.BootModeBzImage
	default:
		return "", api.Errorf(api.CodeInvalidParameterValue, "The kernel '%s' is neither a bzImage nor an ELF file.", kernelPath)
	}
	if requested != "" && requested != mode {
		return "", api.Errorf(api.CodeInvalidParameterValue, "Boot mode %s was requested but '%s' is a %s kernel.", requested, kernelPath, mode)
	}
	return mode, nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
