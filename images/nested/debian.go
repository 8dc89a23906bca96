package nested

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Cache holds Debian packages fetched with `apt-get download` (nothing is
// installed on the host) and extracted with `dpkg-deb -x`, each into its
// own folder. An extracted package is reused by later runs; a folder is
// only trusted once the marker file written after a successful extraction
// exists, so an interrupted run is redone rather than half-used.
type Cache struct {
	Dir string
}

// DefaultCacheDir is $GUREUM_CACHE/nested when set, else the user cache
// folder (~/.cache/gureum/nested).
func DefaultCacheDir() string {
	if d := os.Getenv("GUREUM_CACHE"); d != "" {
		return filepath.Join(d, "nested")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "gureum", "nested")
}

const extractedMarker = ".gureum-extracted"

// Package returns the folder holding the extracted contents of the Debian
// package name, downloading and extracting it on first use.
func (c Cache) Package(name string) (string, error) {
	dir := filepath.Join(c.Dir, "pkg", name)
	if _, err := os.Stat(filepath.Join(dir, extractedMarker)); err == nil {
		return dir, nil
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("package %s: %s not found: the nested host fetches Debian packages with apt-get and dpkg-deb (a Debian or Ubuntu host)", name, tool)
		}
	}
	debs := filepath.Join(c.Dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("package %s: cache folder: %w", name, err)
	}
	deb, err := c.download(debs, name)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("package %s: clear %s: %w", name, dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("package %s: %w", name, err)
	}
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("package %s: dpkg-deb -x %s: %v: %s (is the cache disk %s full?)", name, deb, err, strings.TrimSpace(string(out)), c.Dir)
	}
	if err := os.WriteFile(filepath.Join(dir, extractedMarker), nil, 0o644); err != nil {
		return "", fmt.Errorf("package %s: %w", name, err)
	}
	return dir, nil
}

// download runs apt-get download in folder debs and returns the .deb path.
func (c Cache) download(debs, name string) (string, error) {
	if deb := findDeb(debs, name); deb != "" {
		return deb, nil
	}
	cmd := exec.Command("apt-get", "download", name)
	cmd.Dir = debs
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("package %s: apt-get download: %v: %s (run apt-get update if the package is unknown)", name, err, lastLine(out))
	}
	deb := findDeb(debs, name)
	if deb == "" {
		return "", fmt.Errorf("package %s: apt-get download left no %s_*.deb in %s", name, name, debs)
	}
	return deb, nil
}

func findDeb(dir, name string) string {
	m, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Kernel is an extracted Debian kernel package.
type Kernel struct {
	Flavour string // "cloud" or "generic"
	Version string // uname -r, e.g. 6.1.0-56-cloud-amd64
	Vmlinuz string // the bzImage
	Modules *ModuleSet
}

var kernelPackage = regexp.MustCompile(`linux-image-[0-9][^ ,()]*-amd64`)

// Kernel fetches the Debian kernel that the metapackage of flavour
// ("cloud": linux-image-cloud-amd64, "generic": linux-image-amd64)
// currently points at. The metapackage is resolved with apt-cache from the
// host's package lists.
func (c Cache) Kernel(flavour string) (Kernel, error) {
	meta := map[string]string{"cloud": "linux-image-cloud-amd64", "generic": "linux-image-amd64"}[flavour]
	if meta == "" {
		return Kernel{}, fmt.Errorf("unknown kernel flavour %q (want cloud or generic)", flavour)
	}
	pkg, err := c.resolveMeta(meta)
	if err != nil {
		return Kernel{}, err
	}
	dir, err := c.Package(pkg)
	if err != nil {
		return Kernel{}, err
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	k := Kernel{Flavour: flavour, Version: version, Vmlinuz: filepath.Join(dir, "boot", "vmlinuz-"+version)}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w (remove %s to fetch it again)", pkg, err, dir)
	}
	k.Modules, err = OpenModules(filepath.Join(dir, "lib", "modules", version))
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel %s: %w", pkg, err)
	}
	return k, nil
}

// resolveMeta names the versioned kernel package a metapackage depends on.
// The answer is remembered in the cache so later runs work offline.
func (c Cache) resolveMeta(meta string) (string, error) {
	memo := filepath.Join(c.Dir, "resolved", meta)
	if b, err := os.ReadFile(memo); err == nil && kernelPackage.Match(b) {
		return strings.TrimSpace(string(b)), nil
	}
	out, err := exec.Command("apt-cache", "depends", "--important", meta).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %v: %s (run apt-get update)", meta, err, lastLine(out))
	}
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Depends:") {
			if m := kernelPackage.FindString(l); m != "" {
				if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
					os.WriteFile(memo, []byte(m+"\n"), 0o644)
				}
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("apt-cache depends %s: no linux-image-*-amd64 dependency in %q", meta, strings.TrimSpace(string(out)))
}

// Busybox returns the path of the static busybox from busybox-static.
func (c Cache) Busybox() (string, error) {
	dir, err := c.Package("busybox-static")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "bin", "busybox")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("busybox-static: %w", err)
	}
	return p, nil
}

// readFileLimited reads a file that must not be larger than limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New(path + ": too large")
	}
	return b, nil
}
