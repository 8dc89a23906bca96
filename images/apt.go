package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Fetching Debian packages without installing them. `apt-cache show`
// reads the package lists that `apt-get update` stored under
// /var/lib/apt/lists and tells the candidate version and its dependencies;
// `apt-get download NAME=VERSION` fetches exactly that .deb into the current
// directory; `dpkg-deb -x` unpacks its files into a directory. Nothing runs
// a package's scripts and nothing touches the host's installed system.

// ErrNoPackageLists means apt has never downloaded its package lists on
// this host, so it knows no package at all.
var ErrNoPackageLists = errors.New("apt has no package lists (/var/lib/apt/lists is empty): run `apt-get update` as root first")

// MissingPackageError means apt's package lists have no installable
// version of Package.
type MissingPackageError struct {
	Package string
	Detail  string // what apt said
}

func (e *MissingPackageError) Error() string {
	return fmt.Sprintf("package %s not found in apt's package lists (%s): run `apt-get update` as root, and check that /etc/apt/sources.list names a Debian release that has it", e.Package, e.Detail)
}

// FetchError means apt-get could not download a package: usually the
// mirror is unreachable or the lists are older than the mirror.
type FetchError struct {
	Packages []string
	Detail   string
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("apt-get download %s failed: %s (is the Debian mirror reachable? if a file is missing on it, run `apt-get update`)",
		strings.Join(e.Packages, " "), e.Detail)
}

// Package is one Debian binary package at an exact version.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// aptListsDir is where apt keeps its package lists; a variable for tests.
var aptListsDir = "/var/lib/apt/lists"

// checkPackageLists fails with ErrNoPackageLists when apt has no lists.
func checkPackageLists() error {
	found, err := filepath.Glob(filepath.Join(aptListsDir, "*_Packages*"))
	if err != nil {
		return fmt.Errorf("look for apt package lists: %w", err)
	}
	if len(found) == 0 {
		return ErrNoPackageLists
	}
	return nil
}

// runTool runs a command and returns its standard output; on failure the
// error carries its standard error.
func runTool(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &errb
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.Bytes(), &toolError{cmd: name + " " + strings.Join(args, " "), err: err, stderr: msg}
	}
	return out.Bytes(), nil
}

// toolError is a failed external command with what it printed.
type toolError struct {
	cmd    string
	err    error
	stderr string
}

func (e *toolError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *toolError) Unwrap() error { return e.err }

// candidates returns, for each name, the version apt would install and
// that version's control fields. One apt-cache call answers for all names
// (each call reads all of apt's lists, which takes a second or two).
func candidates(ctx context.Context, names ...string) (map[string]Package, map[string]map[string]string, error) {
	args := append([]string{"show", "--no-all-versions"}, names...)
	out, err := runTool(ctx, "", []string{"LC_ALL=C"}, "apt-cache", args...)
	var te *toolError
	// apt-cache fails only when it found none of the names; otherwise the
	// missing ones are just absent from its output.
	if err != nil && errors.As(err, &te) && strings.Contains(te.stderr, "No packages found") {
		return nil, nil, &MissingPackageError{Package: names[0], Detail: lastLine(te.stderr)}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("look up packages %s: %w", strings.Join(names, " "), err)
	}
	pkgs := map[string]Package{}
	fields := map[string]map[string]string{}
	for _, stanza := range strings.Split(string(out), "\n\n") {
		f := controlFields([]byte(stanza))
		name := f["Package"]
		if name == "" || f["Version"] == "" {
			continue
		}
		if _, seen := fields[name]; seen {
			continue
		}
		pkgs[name] = Package{Name: name, Version: f["Version"]}
		fields[name] = f
	}
	for _, n := range names {
		if _, ok := pkgs[n]; !ok {
			return nil, nil, &MissingPackageError{Package: n, Detail: "apt-cache show has no installable version"}
		}
	}
	return pkgs, fields, nil
}

// controlFields parses one stanza of Debian control data ("Key: value"
// lines, continuation lines start with a space).
func controlFields(b []byte) map[string]string {
	fields := map[string]string{}
	last := ""
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			if len(fields) > 0 {
				break
			}
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

// kernelDependency returns the versioned kernel package that a kernel
// metapackage (linux-image-cloud-amd64) depends on
// (linux-image-6.1.0-NN-cloud-amd64): the one with the kernel and modules.
func kernelDependency(meta string, fields map[string]string) (string, error) {
	for _, alt := range strings.Split(fields["Depends"], ",") {
		// "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)" or "a | b".
		name := strings.Fields(strings.TrimSpace(strings.Split(alt, "|")[0]))
		if len(name) > 0 && strings.HasPrefix(name[0], "linux-image-") {
			return name[0], nil
		}
	}
	return "", fmt.Errorf("package %s depends on no linux-image package (Depends: %q)", meta, fields["Depends"])
}

// downloadPackages fetches the exact versions into dir and returns each
// package's .deb path by name.
func downloadPackages(ctx context.Context, dir string, pkgs []Package) (map[string]string, error) {
	args := []string{"download"}
	if os.Geteuid() == 0 {
		// As root apt drops to the _apt user to download, which cannot
		// write our private temporary directory; download as root.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	var names []string
	for _, p := range pkgs {
		args = append(args, p.Name+"="+p.Version)
		names = append(names, p.Name)
	}
	if _, err := runTool(ctx, dir, []string{"LC_ALL=C"}, "apt-get", args...); err != nil {
		var te *toolError
		if errors.As(err, &te) {
			if isDiskFull(te.stderr) {
				return nil, &CacheFullError{Path: dir, Err: err}
			}
			return nil, &FetchError{Packages: names, Detail: lastLine(te.stderr)}
		}
		return nil, fmt.Errorf("apt-get download: %w", err)
	}
	debs := map[string]string{}
	for _, p := range pkgs {
		// apt names files NAME_VERSION_ARCH.deb with ':' in the version
		// escaped as %3a.
		m, err := filepath.Glob(filepath.Join(dir, p.Name+"_*.deb"))
		if err != nil || len(m) == 0 {
			return nil, fmt.Errorf("apt-get download reported success but %s has no %s_*.deb", dir, p.Name)
		}
		sort.Strings(m)
		debs[p.Name] = m[0]
	}
	return debs, nil
}

// extractPackage unpacks a .deb's files into dir.
func extractPackage(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cacheErr(dir, err)
	}
	if _, err := runTool(ctx, "", nil, "dpkg-deb", "-x", deb, dir); err != nil {
		var te *toolError
		if errors.As(err, &te) && isDiskFull(te.stderr) {
			return &CacheFullError{Path: dir, Err: err}
		}
		return fmt.Errorf("extract %s: %w", filepath.Base(deb), err)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
