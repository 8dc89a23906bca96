package images

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// The guest-side files are ordinary files in this source tree, embedded
// into the binary: images/initramfs/ is copied to the initramfs root and
// images/rootfs/ to the root disk. Read them there; they are shell scripts
// for busybox sh, commented for the guest's side of the boot.
//
//go:embed initramfs rootfs mke2fs.conf
var recipeFiles embed.FS

// recipeVersion names the Go side of the recipe. Change it whenever the Go
// code changes what goes into an image, so cached builds are not reused.
const recipeVersion = "gureum-image-3"

// Fixed identities of the root file system. A fixed UUID and hash seed
// (instead of random ones) let rebuilds give the same bytes; the label lets
// a guest find the disk by name.
const (
	rootUUID     = "67757265-756d-4000-8000-000000000001"
	rootHashSeed = "67757265-756d-4000-8000-000000000002"
	rootLabel    = "gureum-root"
)

// defaultEpoch is the time stamp of every file in the images unless
// SOURCE_DATE_EPOCH says otherwise (2024-01-01T00:00:00Z).
const defaultEpoch = 1704067200

// addRecipeFiles copies the embedded directory dir (initramfs or rootfs)
// into t. A file starting with "#!" is a script and becomes executable
// (embed keeps no permission bits); everything else is 0644.
func addRecipeFiles(t *fileTree, dir string) error {
	return fs.WalkDir(recipeFiles, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		if rel == "" {
			return nil
		}
		if d.IsDir() {
			return t.dir(rel, 0o755)
		}
		data, err := recipeFiles.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", p, err)
		}
		perm := uint32(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			perm = 0o755
		}
		return t.file(rel, perm, data)
	})
}

// recipeHash hashes every embedded recipe file (name and contents, in
// sorted order) and recipeVersion.
func recipeHash() (string, error) {
	var names []string
	err := fs.WalkDir(recipeFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("list embedded recipe: %w", err)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", recipeVersion)
	for _, n := range names {
		data, err := recipeFiles.ReadFile(n)
		if err != nil {
			return "", fmt.Errorf("read embedded %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s %d\n", path.Clean(n), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
