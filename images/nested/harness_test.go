package nested

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpioMember is one parsed newc entry.
type cpioMember struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// readCPIO parses a newc archive independently of the writer.
func readCPIO(t *testing.T, b []byte) []cpioMember {
	t.Helper()
	var out []cpioMember
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field at %d: %v", off, err)
		}
		return uint32(v)
	}
	for {
		if off%4 != 0 || string(b[off:off+6]) != "070701" {
			t.Fatalf("no aligned newc magic at offset %d", off)
		}
		mode, size, namesize := field(1), field(6), field(11)
		major, minor := field(9), field(10)
		nameStart := off + 110
		name := string(b[nameStart : nameStart+int(namesize)-1])
		dataStart := (nameStart + int(namesize) + 3) &^ 3
		data := string(b[dataStart : dataStart+int(size)])
		off = (dataStart + int(size) + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioMember{name, mode, data, major, minor})
	}
}

func TestInitramfsLayout(t *testing.T) {
	src := filepath.Join(t.TempDir(), "big")
	os.WriteFile(src, []byte("streamed from a host file"), 0o644)
	build := func() []byte {
		a := NewInitramfs()
		a.Bytes("/init", 0o755, []byte("#!/bin/sh\n"))
		a.File("l2/cloud/vmlinuz", 0o644, src)
		a.Symlink("bin/sh", "busybox")
		a.CharDev("dev/console", 0o600, 5, 1)
		var buf bytes.Buffer
		if err := a.Write(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	b := build()
	if !bytes.Equal(b, build()) {
		t.Error("two archives of the same inputs differ")
	}
	got := map[string]cpioMember{}
	var order []string
	for _, m := range readCPIO(t, b) {
		got[m.name] = m
		order = append(order, m.name)
	}
	want := []string{"bin", "bin/sh", "dev", "dev/console", "init", "l2", "l2/cloud", "l2/cloud/vmlinuz"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("members %v, want %v (parents added, sorted)", order, want)
	}
	if m := got["init"]; m.mode != modeRegular|0o755 || m.data != "#!/bin/sh\n" {
		t.Errorf("init: mode %o data %q", m.mode, m.data)
	}
	if m := got["l2/cloud/vmlinuz"]; m.data != "streamed from a host file" {
		t.Errorf("streamed file holds %q", m.data)
	}
	if m := got["bin/sh"]; m.mode != modeSymlink|0o777 || m.data != "busybox" {
		t.Errorf("symlink: mode %o target %q", m.mode, m.data)
	}
	if m := got["dev/console"]; m.mode != modeCharDev|0o600 || m.major != 5 || m.minor != 1 {
		t.Errorf("console: mode %o dev %d,%d", m.mode, m.major, m.minor)
	}
	if m := got["l2"]; m.mode != modeDir|0o755 {
		t.Errorf("implicit dir mode %o", m.mode)
	}
}

func TestInitramfsMissingSource(t *testing.T) {
	a := NewInitramfs()
	a.File("x", 0o644, filepath.Join(t.TempDir(), "missing"))
	if err := a.Write(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("error %v, want one naming the missing file", err)
	}
}

const sampleOutput = `=== RUN   TestLinuxBoot
=== RUN   TestLinuxBoot/cloud
gureum-l1: alive uptime=12.00
    linux_test.go:10: cloud ready after 9.1s
=== RUN   TestLinuxBoot/generic
    linux_test.go:20: exit status 1 after shutdown, want 0
--- FAIL: TestLinuxBoot (40.00s)
    --- PASS: TestLinuxBoot/cloud (10.00s)
    --- FAIL: TestLinuxBoot/generic (30.00s)
=== RUN   TestLinuxGuestEnds
--- PASS: TestLinuxGuestEnds (20.50s)
=== RUN   TestSkipped
    linux_test.go:30: no hardware KVM
--- SKIP: TestSkipped (0.00s)
=== RUN   TestHung
panic: test timed out after 7m0s
`

func TestParseTestOutput(t *testing.T) {
	rs := ParseTestOutput(sampleOutput)
	var got []string
	for _, r := range rs {
		got = append(got, r.Name+":"+r.Status+":"+r.Elapsed)
	}
	want := "TestLinuxBoot:FAIL:40.00s TestLinuxGuestEnds:PASS:20.50s TestSkipped:SKIP:0.00s TestHung:NONE:"
	if strings.Join(got, " ") != want {
		t.Fatalf("results %v, want %s", got, want)
	}
	if !strings.Contains(rs[0].Output, "want 0") || strings.Contains(rs[0].Output, "alive") {
		t.Errorf("TestLinuxBoot output lacks its failure or keeps the heartbeat:\n%s", rs[0].Output)
	}
	if !strings.Contains(rs[3].Output, "panic: test timed out") {
		t.Errorf("the hung test's output lacks the panic:\n%s", rs[3].Output)
	}
	section := TestSection("boot noise\n" + MarkerTestsBegin + " uptime=3\n=== RUN   TestA\n--- PASS: TestA (1.00s)\n" + MarkerTestsEnd + " status=0\n")
	if rs := ParseTestOutput(section); len(rs) != 1 || rs[0].Status != "PASS" {
		t.Errorf("section %q parsed as %+v", section, rs)
	}
}

// fakeQEMU writes a script that stands in for qemu-system-x86_64: it
// prints body's output (a shell snippet) and counts its runs in a file.
func fakeQEMU(t *testing.T, body string) (path, counter string) {
	t.Helper()
	dir := t.TempDir()
	counter = filepath.Join(dir, "runs")
	path = filepath.Join(dir, "qemu")
	script := "#!/bin/sh\necho run >> " + counter + "\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, counter
}

func runs(t *testing.T, counter string) int {
	b, _ := os.ReadFile(counter)
	return strings.Count(string(b), "run")
}

func TestRunL1Outcomes(t *testing.T) {
	for _, c := range []struct {
		name       string
		body       string
		runs       int
		froze      bool
		ended      bool
		status     int
		summaryHas string
	}{
		{"frozen before the tests: retried once", `echo "` + MarkerInit + `"; sleep 30`, 2, true, false, 0, "before the tests began"},
		{"silent during the tests without a heartbeat: not retried", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; sleep 30`, 1, false, false, 0, "during the tests"},
		{"heartbeat stopped during the tests: retried once", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; echo "` + MarkerAlive + ` uptime=5"; sleep 30`, 2, true, false, 0, "during the tests"},
		{"tests failed: not retried", `echo "` + MarkerTestsBegin + `"; echo "--- FAIL: TestA (1.00s)"; echo "` + MarkerTestsEnd + ` status=1"`, 1, false, true, 1, "status 1"},
		{"L1's kernel panicked during the tests: retried once", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; echo "[  103.98] Kernel panic - not syncing: corrupted stack end detected inside scheduler"`, 2, false, false, 0, "QEMU ended"},
		{"L1's kernel reported a soft lockup, its heartbeat stopped: ended at once and retried once", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; echo "` + MarkerAlive + ` uptime=5"; echo "[   48.63] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [gureum-vmm:167]"; while true; do sleep 0.5; echo "[   76.63] watchdog: BUG: soft lockup - CPU#1 stuck for 52s! [gureum-vmm:167]"; done`, 2, false, false, 0, "locked up"},
		{"an L2 guest's soft lockup quoted in a test failure is not L1's: not retried", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; echo "        [   56.41] watchdog: BUG: soft lockup - CPU#1 stuck for 52s! [init:1]"; echo "--- FAIL: TestA (150.00s)"; echo "` + MarkerTestsEnd + ` status=1"`, 1, false, true, 1, "status 1"},
		{"L1's machine reset silently during the tests: retried once", `echo "` + MarkerTestsBegin + `"; echo "=== RUN   TestA"; echo "` + MarkerAlive + ` uptime=5"; exit 0`, 2, false, false, 0, "reset"},
		{"QEMU died early: not retried", `echo "qemu: could not load kernel" >&2; exit 1`, 1, false, false, 0, "QEMU ended"},
	} {
		t.Run(c.name, func(t *testing.T) {
			qemu, counter := fakeQEMU(t, c.body)
			cfg := RunConfig{QEMU: qemu, Kernel: "k", Initrd: "i", Dir: t.TempDir(),
				StallAfter: time.Second, Timeout: 20 * time.Second}
			start := time.Now()
			all, err := RunL1WithRetry(context.Background(), cfg, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if n := runs(t, counter); n != c.runs || len(all) != c.runs {
				t.Fatalf("QEMU ran %d times (%d results), want %d", n, len(all), c.runs)
			}
			r := all[0]
			if r.EmulatorFroze() != c.froze || r.Ended != c.ended || r.Status != c.status {
				t.Errorf("froze %v ended %v status %d, want %v %v %d", r.EmulatorFroze(), r.Ended, r.Status, c.froze, c.ended, c.status)
			}
			if !strings.Contains(r.Summary(), c.summaryHas) {
				t.Errorf("summary %q lacks %q", r.Summary(), c.summaryHas)
			}
			if r.Stalled && !strings.Contains(r.Registers, "monitor") {
				t.Errorf("a stalled run carries no monitor answer: %q", r.Registers)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v: the stall was not detected promptly", time.Since(start))
			}
		})
	}
}

func TestRunL1Timeout(t *testing.T) {
	// A heartbeat keeps the stall detector quiet; the overall timeout
	// must still end the run.
	qemu, _ := fakeQEMU(t, `while true; do echo "`+MarkerAlive+`"; sleep 0.2; done`)
	r, err := RunL1(context.Background(), RunConfig{QEMU: qemu, Dir: t.TempDir(), StallAfter: time.Second, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TimedOut || r.Stalled || r.EmulatorFroze() {
		t.Fatalf("timed out %v stalled %v froze %v, want a plain timeout", r.TimedOut, r.Stalled, r.EmulatorFroze())
	}
}

func TestModuleLoadOrder(t *testing.T) {
	c := Cache{Dir: DefaultCacheDir()}
	dirs, _ := filepath.Glob(filepath.Join(c.Dir, "pkg", "linux-image-*-cloud-amd64", "lib", "modules", "*"))
	if len(dirs) == 0 {
		t.Skip("no Debian cloud kernel in the cache yet (the nested test fetches it)")
	}
	m, err := OpenModules(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	order, err := m.LoadOrder("kvm-amd", "virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, p := range order {
		pos[normalizeModule(p)] = i + 1
	}
	for _, pair := range [][2]string{{"irqbypass", "kvm"}, {"kvm", "kvm_amd"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}} {
		if pos[pair[0]] == 0 || pos[pair[1]] == 0 || pos[pair[0]] > pos[pair[1]] {
			t.Errorf("%s must load before %s; order %v", pair[0], pair[1], order)
		}
	}
	if _, err := m.LoadOrder("no_such_module"); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("missing module: error %v", err)
	}
}
