package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The root disk: an ext4 file system made by mke2fs straight from a staging
// directory (`mkfs.ext4 -d DIR`), so no mount and no privileges are needed.
//
// Reproducibility. mke2fs would otherwise put random and time-dependent
// values into the file system. We fix them:
//   - the UUID (-U) and the directory hash seed (-E hash_seed=),
//   - the time it records in the superblock and new inodes
//     (E2FSPROGS_FAKE_TIME, and SOURCE_DATE_EPOCH for newer versions),
//   - the features, from our own mke2fs.conf (MKE2FS_CONFIG).
//
// mke2fs 1.47.0 still copies each staged file's ctime and atime, which no
// program can set on the staging directory (ctime is the time of the last
// change). So after mke2fs, debugfs rewrites every inode's times and owner
// to fixed values. With that, the same inputs give the same image bytes.

// e2fsTools are the two programs from e2fsprogs the build runs.
type e2fsTools struct {
	mkfs    string   // mke2fs (mkfs.ext4)
	debugfs string   // debugfs
	env     []string // extra environment (LD_LIBRARY_PATH for extracted ones)
	version string   // `mke2fs -V` first line, part of the cache key
}

// hostE2fsTools finds mke2fs and debugfs on the host; ok is false when
// either is missing. sbin directories are searched too because they are
// often not on a normal user's PATH.
func hostE2fsTools(ctx context.Context) (e2fsTools, bool) {
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				p := filepath.Join(dir, n)
				if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
					return p
				}
			}
		}
		return ""
	}
	t := e2fsTools{mkfs: find("mkfs.ext4", "mke2fs"), debugfs: find("debugfs")}
	if t.mkfs == "" || t.debugfs == "" {
		return e2fsTools{}, false
	}
	v, err := e2fsVersion(ctx, t)
	if err != nil {
		return e2fsTools{}, false
	}
	t.version = v
	return t, true
}

// extractedE2fsTools uses e2fsprogs unpacked under dir (with its libraries
// from the same download: libext2fs2, libcom-err2, libss2).
func extractedE2fsTools(ctx context.Context, dir string) (e2fsTools, error) {
	t := e2fsTools{
		mkfs:    filepath.Join(dir, "sbin", "mke2fs"),
		debugfs: filepath.Join(dir, "sbin", "debugfs"),
		env: []string{"LD_LIBRARY_PATH=" + strings.Join([]string{
			filepath.Join(dir, "lib", "x86_64-linux-gnu"),
			filepath.Join(dir, "usr", "lib", "x86_64-linux-gnu"),
		}, ":")},
	}
	v, err := e2fsVersion(ctx, t)
	if err != nil {
		return e2fsTools{}, fmt.Errorf("run the extracted mke2fs: %w", err)
	}
	t.version = v
	return t, nil
}

func e2fsVersion(ctx context.Context, t e2fsTools) (string, error) {
	// mke2fs -V prints its version on standard error and exits 0.
	cmd := exec.CommandContext(ctx, t.mkfs, "-V")
	cmd.Env = append(os.Environ(), t.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -V: %w: %s", t.mkfs, err, strings.TrimSpace(string(out)))
	}
	return lastLine(strings.SplitN(string(out), "\n", 2)[0]), nil
}

// e2fsPackages are the packages to download when the host has no
// mke2fs/debugfs. libc, libblkid and libuuid are on every Debian system.
var e2fsPackages = []string{"e2fsprogs", "libext2fs2", "libcom-err2", "libss2"}

// makeRootDisk writes tree as an ext4 image of sizeMiB at img. work is an
// empty scratch directory on the same file system.
func makeRootDisk(ctx context.Context, t e2fsTools, tree *fileTree, img, work string, sizeMiB int, epoch int64) error {
	staging := filepath.Join(work, "root")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return cacheErr(staging, err)
	}
	if err := tree.writeDir(staging, epoch); err != nil {
		return err
	}
	conf, err := recipeFiles.ReadFile("mke2fs.conf")
	if err != nil {
		return fmt.Errorf("read embedded mke2fs.conf: %w", err)
	}
	confPath := filepath.Join(work, "mke2fs.conf")
	if err := writeFile(confPath, conf, 0o644); err != nil {
		return err
	}
	// A sparse file: only the blocks mke2fs writes take space.
	f, err := os.Create(img)
	if err != nil {
		return cacheErr(img, err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		f.Close()
		return cacheErr(img, err)
	}
	if err := f.Close(); err != nil {
		return cacheErr(img, err)
	}
	epochStr := strconv.FormatInt(epoch, 10)
	env := append([]string{
		"MKE2FS_CONFIG=" + confPath,
		"E2FSPROGS_FAKE_TIME=" + epochStr,
		"SOURCE_DATE_EPOCH=" + epochStr,
		"LC_ALL=C",
	}, t.env...)
	_, err = runTool(ctx, work, env, t.mkfs,
		"-q", "-F", "-t", "ext4",
		"-L", rootLabel,
		"-U", rootUUID,
		"-E", "hash_seed="+rootHashSeed+",root_owner=0:0",
		"-d", staging,
		img)
	if err != nil {
		return toolCacheErr(img, "mke2fs", err)
	}

	// Fix every inode's times and owner (see the top of this file).
	var script strings.Builder
	for _, p := range append([]string{""}, tree.paths()...) {
		for _, field := range []string{"atime", "ctime", "mtime", "crtime"} {
			fmt.Fprintf(&script, "set_inode_field /%s %s @%d\n", p, field, epoch)
		}
		fmt.Fprintf(&script, "set_inode_field /%s uid 0\nset_inode_field /%s gid 0\n", p, p)
	}
	scriptPath := filepath.Join(work, "debugfs.cmds")
	if err := writeFile(scriptPath, []byte(script.String()), 0o644); err != nil {
		return err
	}
	out, err := runTool(ctx, work, env, t.debugfs, "-w", "-f", scriptPath, img)
	if err != nil {
		return toolCacheErr(img, "debugfs", err)
	}
	// debugfs reports a failed command on its output and still exits 0.
	if bad := debugfsError(string(out)); bad != "" {
		return fmt.Errorf("debugfs on %s: %s", img, bad)
	}
	return nil
}

// debugfsError returns the first error line debugfs printed, if any. Its
// echo of each command starts with "debugfs: "; errors name the command
// ("set_inode_field: ...").
func debugfsError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "set_inode_field:") {
			return line
		}
	}
	return ""
}

// toolCacheErr turns a failed tool writing path into a CacheFullError when
// it reported a full disk.
func toolCacheErr(path, what string, err error) error {
	var te *toolError
	if errors.As(err, &te) && isDiskFull(te.stderr) {
		return &CacheFullError{Path: path, Err: err}
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}
