package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The cache. Each build goes into CACHE/KEY/, where KEY hashes everything
// that decides the output: the exact versions of the Debian packages used,
// the recipe (the files under images/initramfs and images/rootfs, the
// mke2fs settings and recipeVersion) and the build options. A directory
// with a manifest.json is complete: the build writes into a temporary
// directory beside it and renames it into place only at the end, so an
// interrupted build never looks finished. CACHE/latest points at the most
// recent build.

// DefaultCacheDir is /var/cache/gureum/images for root, and
// $XDG_CACHE_HOME/gureum/images (usually ~/.cache/gureum/images) otherwise.
func DefaultCacheDir() (string, error) {
	if os.Geteuid() == 0 {
		return "/var/cache/gureum/images", nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory (use --cache): %w", err)
	}
	return filepath.Join(base, "gureum", "images"), nil
}

// CacheFullError means the file system holding the cache ran out of space
// while Path was written.
type CacheFullError struct {
	Path string
	Err  error
}

func (e *CacheFullError) Error() string {
	return fmt.Sprintf("no space left on the cache's file system writing %s: free some space there (a build needs about 600 MB while it runs and 200 MB after), or choose a cache on another disk with --cache DIR", e.Path)
}

func (e *CacheFullError) Unwrap() error { return e.Err }

// cacheErr wraps an error from writing path, turning ENOSPC and EDQUOT into
// a CacheFullError that names the file and the fix.
func cacheErr(path string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &CacheFullError{Path: path, Err: err}
	}
	return fmt.Errorf("write %s: %w", path, err)
}

// isDiskFull tells whether an external tool's message reports a full disk.
func isDiskFull(msg string) bool {
	return strings.Contains(msg, "No space left on device") || strings.Contains(msg, "Disk quota exceeded")
}

// writeFile writes data to path with the given permissions, replacing any
// older file.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return cacheErr(path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return cacheErr(path, err)
	}
	if err := f.Close(); err != nil {
		return cacheErr(path, err)
	}
	return nil
}

// pointLatest makes cache/latest a symbolic link to the build directory
// name, replacing the previous link atomically (rename over it).
func pointLatest(cache, name string) error {
	tmp := filepath.Join(cache, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return cacheErr(tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(cache, "latest")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("point %s/latest at %s: %w", cache, name, err)
	}
	return nil
}
