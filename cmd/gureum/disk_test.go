package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gureum/storage"
)

// runGureum runs the gureum command line in-process and returns what it
// printed.
func runGureum(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runGureum(t, args...)
	if err != nil {
		t.Fatalf("gureum %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func haveQemuImg(t *testing.T) bool {
	_, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Log("qemu-img not installed: skipping the cross-checks")
	}
	return err == nil
}

// qemuInfo is the part of `qemu-img info --output=json` the tests read.
type qemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	Backing     string `json:"backing-filename"`
}

func qemuImgInfo(t *testing.T, path string) qemuInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info qemuInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func writeAt(t *testing.T, path string, data []byte, off int64) {
	t.Helper()
	d, err := storage.Open(path, storage.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDiskCreateInfoResize(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	rawImg := filepath.Join(dir, "disk.raw")
	mustRun(t, "disk", "create", "-f", "qcow2", base, "64M")
	mustRun(t, "disk", "create", "-f", "qcow2", "-b", "base.qcow2", top)
	mustRun(t, "disk", "create", "-f", "raw", rawImg, "1G")

	out := mustRun(t, "disk", "info", top)
	for _, want := range []string{
		"image: " + top, "format: qcow2", "virtual size: 64.0 MiB (67108864 bytes)",
		"backed by:", "image: " + base,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info of the top misses %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "disk", "info", rawImg); !strings.Contains(out, "format: raw") || !strings.Contains(out, "(1073741824 bytes)") {
		t.Errorf("info of a raw disk:\n%s", out)
	}

	mustRun(t, "disk", "resize", top, "+64M")
	mustRun(t, "disk", "resize", rawImg, "2G")
	if _, err := runGureum(t, "disk", "resize", rawImg, "1G"); err == nil || !strings.Contains(err.Error(), "only grow") {
		t.Errorf("shrink: %v", err)
	}
	if haveQemuImg(t) {
		if i := qemuImgInfo(t, top); i.Format != "qcow2" || i.VirtualSize != 128<<20 || i.Backing != "base.qcow2" {
			t.Errorf("qemu-img sees the top as %+v", i)
		}
		if i := qemuImgInfo(t, rawImg); i.Format != "raw" || i.VirtualSize != 2<<30 {
			t.Errorf("qemu-img sees the raw disk as %+v", i)
		}
		for _, p := range []string{base, top} {
			if out, err := exec.Command("qemu-img", "check", p).CombinedOutput(); err != nil {
				t.Errorf("qemu-img check %s: %v\n%s", p, err, out)
			}
		}
	}
}

func TestDiskConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	mustRun(t, "disk", "create", "-f", "qcow2", base, "32M")
	writeAt(t, base, bytes.Repeat([]byte{0xaa}, 100000), 12345)
	mustRun(t, "disk", "create", "-f", "qcow2", "-b", "base.qcow2", top)
	writeAt(t, top, bytes.Repeat([]byte{0xbb}, 5000), 50000)
	writeAt(t, top, []byte("end"), 32<<20-3)

	flatRaw := filepath.Join(dir, "flat.raw")
	flatQcow := filepath.Join(dir, "flat.qcow2")
	mustRun(t, "disk", "convert", "-O", "raw", top, flatRaw)
	mustRun(t, "disk", "convert", "-O", "qcow2", flatRaw, flatQcow)

	want := make([]byte, 32<<20)
	copy(want[12345:], bytes.Repeat([]byte{0xaa}, 100000))
	copy(want[50000:], bytes.Repeat([]byte{0xbb}, 5000))
	copy(want[32<<20-3:], "end")
	got, err := os.ReadFile(flatRaw)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("converted raw differs from the chain (%v)", err)
	}
	if chain, err := imageChain(flatQcow); err != nil || len(chain) != 1 {
		t.Fatalf("converted qcow2 chain %v, %v: want one standalone file", chain, err)
	}
	if alloc, _ := allocatedSize(flatRaw); alloc > 4<<20 {
		t.Errorf("converted raw takes %d bytes: zero ranges were written", alloc)
	}
	if haveQemuImg(t) {
		for _, pair := range [][2]string{{top, flatRaw}, {top, flatQcow}} {
			if out, err := exec.Command("qemu-img", "compare", pair[0], pair[1]).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare %s %s: %v\n%s", pair[0], pair[1], err, out)
			}
		}
		if out, err := exec.Command("qemu-img", "check", flatQcow).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check: %v\n%s", err, out)
		}
		// And the other way: a file qemu-img converts reads the same in ours.
		theirs := filepath.Join(dir, "theirs.qcow2")
		if out, err := exec.Command("qemu-img", "convert", "-c", "-O", "qcow2", top, theirs).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		back := filepath.Join(dir, "back.raw")
		mustRun(t, "disk", "convert", "-O", "raw", theirs, back)
		if got, _ := os.ReadFile(back); !bytes.Equal(got, want) {
			t.Error("a compressed image from qemu-img converts to different bytes")
		}
	}
}

func TestDiskErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.qcow2")
	mustRun(t, "disk", "create", img, "1M")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"disk", "create", img, "1M"}, "file exists"},
		{[]string{"disk", "create", "-f", "vmdk", filepath.Join(dir, "b"), "1M"}, "unknown format"},
		{[]string{"disk", "create", filepath.Join(dir, "c"), "ten"}, "bad size"},
		{[]string{"disk", "create", filepath.Join(dir, "d")}, "give a SIZE"},
		{[]string{"disk", "create", "-f", "raw", "-b", img, filepath.Join(dir, "e")}, "only qcow2"},
		{[]string{"disk", "create", "-b", "missing.qcow2", filepath.Join(dir, "f")}, "backing file"},
		{[]string{"disk", "info", filepath.Join(dir, "nope")}, "no such file"},
		{[]string{"disk", "convert", "-O", "qcow2", img, img}, "file exists"},
	} {
		_, err := runGureum(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("gureum %s: %v, want a one-line error about %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512K": 512 << 10, "64M": 64 << 20, "10G": 10 << 30, "2T": 2 << 40, "1GiB": 1 << 30, "3g": 3 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "1.5G", "99999999999P"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

// damage edits a qcow2 file in place: it appends one cluster whose
// refcount it sets to 1 with no reference (a leak, as a crash leaves),
// and, if corrupt, points L1[0] past the end of the file.
func damage(t *testing.T, path string, corrupt bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be := binary.BigEndian
	var hdr [72]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	clusterSize := int64(1) << be.Uint32(hdr[20:])
	l1Off := int64(be.Uint64(hdr[40:]))
	refTableOff := int64(be.Uint64(hdr[48:]))
	st, _ := f.Stat()
	leaked := (st.Size() + clusterSize - 1) / clusterSize
	if err := f.Truncate((leaked + 1) * clusterSize); err != nil {
		t.Fatal(err)
	}
	var ent [8]byte
	if _, err := f.ReadAt(ent[:], refTableOff); err != nil {
		t.Fatal(err)
	}
	block := int64(be.Uint64(ent[:]))
	var one [2]byte // 16-bit refcounts, the default
	be.PutUint16(one[:], 1)
	if _, err := f.WriteAt(one[:], block+2*leaked); err != nil {
		t.Fatal(err)
	}
	if corrupt {
		be.PutUint64(ent[:], 1<<63|uint64(1<<40))
		if _, err := f.WriteAt(ent[:], l1Off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiskCheck(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.qcow2")
	mustRun(t, "disk", "create", img, "8M")
	writeAt(t, img, []byte("data"), 0)
	if out := mustRun(t, "disk", "check", img); !strings.Contains(out, "no errors found") {
		t.Errorf("check of a clean image:\n%s", out)
	}
	rawImg := filepath.Join(dir, "b.raw")
	mustRun(t, "disk", "create", "-f", "raw", rawImg, "1M")
	if out := mustRun(t, "disk", "check", rawImg); !strings.Contains(out, "raw image") {
		t.Errorf("check of a raw image:\n%s", out)
	}

	damage(t, img, false)
	if _, err := runGureum(t, "disk", "check", img); err == nil || !strings.Contains(err.Error(), "1 leaked cluster") {
		t.Fatalf("check of a leaky image: %v", err)
	}
	if haveQemuImg(t) {
		if err := exec.Command("qemu-img", "check", img).Run(); err == nil {
			t.Fatal("qemu-img sees no leak: the test damaged nothing")
		}
	}
	if out := mustRun(t, "disk", "check", "--repair", img); !strings.Contains(out, "freed 1 leaked") {
		t.Errorf("repair:\n%s", out)
	}
	mustRun(t, "disk", "check", img)
	if haveQemuImg(t) {
		if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
			t.Errorf("qemu-img check after repair: %v\n%s", err, out)
		}
	}

	damage(t, img, true)
	if _, err := runGureum(t, "disk", "check", "--repair", img); err == nil || !strings.Contains(err.Error(), "L1") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("check of an image whose L1 points past its end: %v, want a one-line error naming L1", err)
	}
}
