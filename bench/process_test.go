package main

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestStartVMMGivesTerminalOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	script := `if [ -t 0 ]; then echo stdin: tty; else echo stdin: none; fi`
	for _, c := range []struct {
		pty  bool
		want string
	}{{true, "tty"}, {false, "none"}} {
		p, err := startVMM([]string{"sh", "-c", script}, c.pty, filepath.Join(t.TempDir(), "log"))
		if err != nil {
			t.Fatal(err)
		}
		m, at, err := p.waitFor(ctx, regexp.MustCompile(`stdin: (\w+)`), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m[1] != c.want || at <= 0 {
			t.Errorf("pty=%v: stdin %q at %v, want %q", c.pty, m[1], at, c.want)
		}
		if code, err := p.waitExit(ctx, 10*time.Second); err != nil || code != 0 {
			t.Errorf("pty=%v: exit %d, %v", c.pty, code, err)
		}
	}
}

func TestWaitForReportsEarlyExit(t *testing.T) {
	p, err := startVMM([]string{"sh", "-c", "echo no marker here; exit 3"}, false, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.waitFor(context.Background(), regexp.MustCompile(`ready`), 10*time.Second)
	if !errors.Is(err, errExited) {
		t.Fatalf("got %v, want errExited", err)
	}
}

func TestKillEndsARunningProcess(t *testing.T) {
	p, err := startVMM([]string{"sleep", "60"}, false, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.kill()
	if p.status() == "running" || time.Since(start) > 5*time.Second {
		t.Fatalf("still %s after kill", p.status())
	}
	_, _, err = p.waitFor(context.Background(), regexp.MustCompile(`x`), 10*time.Second)
	if !errors.Is(err, errExited) {
		t.Fatalf("waitFor after kill: %v", err)
	}
}
