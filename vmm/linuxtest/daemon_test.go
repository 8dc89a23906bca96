package linuxtest

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gureum/api"
	"gureum/client"
	"gureum/images/nested"
	"gureum/vmm/vmmtest"
)

// TestLinuxThroughDaemon runs the cloud kernel of the default image as an
// instance of a real `gureum daemon`, as a user would: the daemon makes
// its root volume from the image's root disk, plugs it into the default
// VPC (DHCP, metadata service, security group) and starts its VMM. The
// guest must get the address describe shows from the daemon's DHCP
// server, be refused metadata without a token (HttpTokens=required), read
// its instance-id and user-data with an IMDSv2 token, and power off, which
// stops the instance (an EBS-backed instance's default shutdown
// behaviour). Started again, it boots from the same root volume.
func TestLinuxThroughDaemon(t *testing.T) {
	g := cloudGuest(t)
	vmmtest.RequireRoot(t)
	gureum := vmmtest.Bin(t, "gureum")
	vmm := vmmtest.Bin(t, "gureum-vmm")
	ensureCgroups(t)

	dir := t.TempDir()
	cg := fmt.Sprintf("gureum-linux-test-%d", os.Getpid())
	vmmtest.CleanupCgroups(t, cg)
	sock := filepath.Join(dir, "gureum.sock")
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(gureum, "daemon", "--data-dir", dir, "--socket", sock, "--vmm", vmm,
		"--cgroup", cg, "--cgroup-nested", "--default-image", "none",
		"--max-guest-memory", "512", "--max-guest-vcpus", "1", // see TestLinuxGuestEnds
		"--cpu-overcommit", "100", "--memory-overcommit", "100", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	daemonLog := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	c := client.New(sock)
	ctx := context.Background()
	var ids []string
	t.Cleanup(func() {
		for _, id := range ids {
			c.TerminateInstance(ctx, id, api.StopRequest{Force: true})
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		c.WaitState(wctx, ids, []string{"terminated"}, nil)
		cancel()
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", daemonLog())
		}
	})
	up := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.DescribeInstances(ctx, client.Filter{}); err == nil {
			break
		}
		if time.Now().After(up) {
			t.Fatalf("the daemon did not answer; log:\n%s", daemonLog())
		}
		time.Sleep(50 * time.Millisecond)
	}

	userData := fmt.Sprintf("#!/bin/sh\necho user data %d\n", time.Now().UnixNano())
	start := time.Now()
	res, err := c.RunInstances(ctx, api.RunInstancesRequest{
		Image: &api.ImageSpec{Kernel: g.Kernel, Initrd: g.Initrd, RootDisk: freshDisk(t, g),
			Cmdline: baseCmdline + ` gureum.name=linux-daemon gureum.run="` + metadataScript + `"`},
		InstanceType: "t3.micro", MetadataHTTPTokens: "required", UserData: userData,
	})
	if err != nil {
		t.Fatal(err)
	}
	in := res.Instances[0]
	ids = append(ids, in.InstanceID)
	if in.PrivateIP == "" || in.VpcID == "" {
		t.Fatalf("launched without an interface: %+v", in)
	}

	// The script powers the guest off; the instance then stops.
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	_, err = c.WaitState(wctx, ids, []string{"stopped"}, nil)
	cancel()
	out := consoleOf(t, c, in.InstanceID)
	if err != nil {
		t.Fatalf("instance did not stop after the guest's poweroff: %v\nconsole:\n%s", err, out)
	}
	t.Logf("stopped %.1fs after the launch", time.Since(start).Seconds())
	r := regexp.MustCompile(metadataLine).FindStringSubmatch(out)
	if r == nil {
		t.Fatalf("no metadata line on the console:\n%s", out)
	}
	t.Logf("guest: %s", strings.TrimSpace(r[0]))
	if ip, _, _ := strings.Cut(r[1], "/"); ip != in.PrivateIP {
		t.Errorf("eth0 came up with %q, want %s (describe, DHCP)", r[1], in.PrivateIP)
	}
	if r[3] != "401" {
		t.Errorf("a metadata GET without a token got %q, want 401 (HttpTokens=required)", r[3])
	}
	if r[5] != in.InstanceID {
		t.Errorf("instance-id with the token: %q, want %q", r[5], in.InstanceID)
	}
	sum := md5.Sum([]byte(userData))
	if want := hex.EncodeToString(sum[:]); r[6] != want {
		t.Errorf("user-data with the token has MD5 %q, want %s", r[6], want)
	}

	// Start again: the same root volume boots, the guest runs its script
	// again on the same address, and powers off again.
	if _, err := c.StartInstance(ctx, in.InstanceID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	if _, err := c.WaitState(wctx, ids, []string{"running"}, nil); err != nil {
		t.Fatalf("not running after start: %v", err)
	}
	ins, err := c.WaitState(wctx, ids, []string{"stopped"}, nil)
	out = consoleOf(t, c, in.InstanceID)
	if err != nil {
		t.Fatalf("the second boot did not power off: %v\nconsole:\n%s", err, out)
	}
	all := regexp.MustCompile(metadataLine).FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		t.Fatalf("no metadata line on the console of the second boot:\n%s", out)
	}
	last := all[len(all)-1]
	if ip, _, _ := strings.Cut(last[1], "/"); ip != in.PrivateIP || ins[0].PrivateIP != in.PrivateIP || last[5] != in.InstanceID {
		t.Errorf("second boot: guest %q id %q, describe %s; want %s and %s", last[1], last[5], ins[0].PrivateIP, in.PrivateIP, in.InstanceID)
	}
}

// cloudGuest is the cloud-kernel guest of the default image (skipping
// as guests does where stock kernels cannot run).
func cloudGuest(t *testing.T) nested.Guest {
	t.Helper()
	for _, c := range guests(t) {
		if c.Name == "cloud" {
			return c
		}
	}
	t.Fatal("no cloud guest among the Linux guests")
	return nested.Guest{}
}

func consoleOf(t *testing.T, c *client.Client, id string) string {
	co, err := c.ConsoleOutput(context.Background(), id)
	if err != nil {
		return fmt.Sprintf("(console: %v)", err)
	}
	return co.Output
}

// ensureCgroups mounts the unified cgroup hierarchy where none is
// mounted (a nested test host's bare /init mounts only proc, sys, dev and
// tmp); the daemon puts every VMM in a cgroup.
func ensureCgroups(t *testing.T) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(b), " cgroup") {
		return
	}
	if err := syscall.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		t.Fatalf("no cgroup hierarchy mounted, and mounting cgroup2 on /sys/fs/cgroup failed: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount("/sys/fs/cgroup", 0) })
}
