package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// fact is one line of the machine description that heads every result.
type fact struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// describeMachine records what the numbers depend on: kernel, CPUs, which
// KVM module provides /dev/kvm (kvm_pvm means no hardware virtualization:
// guest code runs in KVM's instruction emulator), and the versions of
// every peer.
func describeMachine(o options, gokvmBin string) []fact {
	var u unix.Utsname
	kernel := "unknown"
	if err := unix.Uname(&u); err == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	facts := []fact{
		{"date", time.Now().UTC().Format(time.RFC3339)},
		{"kernel (uname -r)", kernel},
		{"nproc", strconv.Itoa(runtime.NumCPU())},
		{"cpu", cpuModel()},
		{"kvm modules", kvmModules()},
		{"go", runtime.Version()},
		{"qemu", firstLine(commandOutput(o.qemu, "--version"))},
		{"gokvm", gokvmModule + " (" + gokvmBin + ")"},
		{"gureum commit", gureumCommit()},
		{"guest and gureum-vmm from", o.binDir},
		{"command", strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " "))},
	}
	return facts
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kvmModules lists loaded modules named kvm*: from lsmod when it is
// installed, else from /sys/module (which also shows built-in ones).
func kvmModules() string {
	var names []string
	if out := commandOutput("lsmod"); out != "" {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "kvm") {
				names = append(names, f[0])
			}
		}
		return strings.Join(names, " ")
	}
	dirs, _ := filepath.Glob("/sys/module/kvm*")
	for _, d := range dirs {
		names = append(names, filepath.Base(d))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none found"
	}
	return strings.Join(names, " ") + " (from /sys/module)"
}

// gureumCommit names the checked-out commit, marked when the tree has
// uncommitted changes (the binaries may then differ from the commit).
func gureumCommit() string {
	rev := strings.TrimSpace(commandOutput("git", "rev-parse", "--short=12", "HEAD"))
	if rev == "" {
		return "unknown"
	}
	if strings.TrimSpace(commandOutput("git", "status", "--porcelain", "--untracked-files=no")) != "" {
		rev += " (with uncommitted changes)"
	}
	return rev
}

// loadAverage returns the three load averages as /proc/loadavg has them.
func loadAverage() (string, float64) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown", 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown", 0
	}
	one, _ := strconv.ParseFloat(f[0], 64)
	return strings.Join(f[:3], " "), one
}

// commandOutput runs a short informational command; "" when it fails.
func commandOutput(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if l == "" {
		return "unknown"
	}
	return l
}

// installGokvm builds gokvm at the pinned version into a fresh temporary
// GOBIN (the Go module proxy serves it) and returns the binary's path and
// a function that removes it.
func installGokvm(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "gureum-bench-gokvm-")
	if err != nil {
		return "", nil, fmt.Errorf("gokvm GOBIN: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	cmd := exec.CommandContext(ctx, "go", "install", gokvmModule)
	// Outside the gureum module, so its go.mod plays no part.
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go install %s: %w: %s", gokvmModule, err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, "gokvm"), cleanup, nil
}
