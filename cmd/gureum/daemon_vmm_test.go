package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVMMPathIsMadeAbsolute checks that `gureum daemon --vmm
// bin/gureum-vmm` works from the directory it names: the daemon keeps an
// absolute path, which still names the binary from the VMMs' run
// directories.
func TestVMMPathIsMadeAbsolute(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin", "gureum-vmm")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "plain"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	got, err := vmmPath("bin/gureum-vmm")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(got) {
		t.Fatalf("vmmPath kept a relative path: %q", got)
	}
	// From another directory (as the supervisor's wrappers run) the
	// answer still names the same file.
	t.Chdir(t.TempDir())
	a, err := os.Stat(got)
	if err != nil {
		t.Fatalf("the resolved path does not work from elsewhere: %v", err)
	}
	b, _ := os.Stat(bin)
	if !os.SameFile(a, b) {
		t.Errorf("vmmPath(bin/gureum-vmm) = %q, not %q", got, bin)
	}

	// An absolute path stays as it is.
	if got, err := vmmPath(bin); err != nil || got != bin {
		t.Errorf("vmmPath(%q) = %q, %v", bin, got, err)
	}
	// Missing and non-executable files are refused at start, naming the flag.
	t.Chdir(dir)
	for _, p := range []string{"bin/missing", "bin/plain", "bin"} {
		if _, err := vmmPath(p); err == nil || !strings.Contains(err.Error(), "--vmm") {
			t.Errorf("vmmPath(%q): %v, want an error naming --vmm", p, err)
		}
	}
}
