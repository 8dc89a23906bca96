package images

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// newcEntry is one parsed archive entry.
type newcEntry struct {
	name                 string
	ino, mode, nlink     uint32
	mtime                uint32
	rdevMajor, rdevMinor uint32
	data                 []byte
}

// parseNewc reads a newc archive strictly (magic, alignment, trailer), as
// the kernel's unpacker would.
func parseNewc(t *testing.T, b []byte) []newcEntry {
	t.Helper()
	var out []newcEntry
	off := 0
	align := func() {
		off = (off + 3) &^ 3
	}
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		e := newcEntry{ino: field(0), mode: field(1), nlink: field(4), mtime: field(5), rdevMajor: field(9), rdevMinor: field(10)}
		if field(2) != 0 || field(3) != 0 {
			t.Errorf("entry at %d not owned by root", off)
		}
		size, nameSize := int(field(6)), int(field(11))
		if field(12) != 0 {
			t.Errorf("check field set at %d", off)
		}
		off += 110
		e.name = string(b[off : off+nameSize-1])
		if b[off+nameSize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", e.name)
		}
		off += nameSize
		align()
		e.data = b[off : off+size]
		off += size
		align()
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestNewcArchive(t *testing.T) {
	tree := newFileTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tree.file("init", 0o755, []byte("#!/bin/sh\n")))
	must(tree.file("lib/modules/x/a.ko", 0o644, []byte("12345")))
	must(tree.symlink("bin/sh", "/bin/busybox"))
	must(tree.charDevice("dev/console", 0o600, 5, 1))
	must(tree.dir("tmp", 0o1777))

	var a, b bytes.Buffer
	must(tree.writeCPIO(&a, 1704067200))
	must(tree.writeCPIO(&b, 1704067200))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two writes of the same tree differ")
	}
	if a.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", a.Len())
	}
	got := map[string]newcEntry{}
	var order []string
	for _, e := range parseNewc(t, a.Bytes()) {
		got[e.name] = e
		order = append(order, e.name)
		if e.mtime != 1704067200 {
			t.Errorf("%s: mtime %d", e.name, e.mtime)
		}
	}
	want := []string{"bin", "bin/sh", "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/x", "lib/modules/x/a.ko", "tmp"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v (parents first)", order, want)
	}
	checks := []struct {
		name string
		mode uint32
		data string
	}{
		{"init", 0o100755, "#!/bin/sh\n"},
		{"lib/modules/x/a.ko", 0o100644, "12345"},
		{"bin/sh", 0o120777, "/bin/busybox"},
		{"dev/console", 0o020600, ""},
		{"tmp", 0o041777, ""},
		{"lib", 0o040755, ""},
	}
	for _, c := range checks {
		e := got[c.name]
		if e.mode != c.mode || string(e.data) != c.data {
			t.Errorf("%s: mode %o data %q, want %o %q", c.name, e.mode, e.data, c.mode, c.data)
		}
	}
	if c := got["dev/console"]; c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.rdevMajor, c.rdevMinor)
	}
	inodes := map[uint32]bool{}
	for _, e := range got {
		if e.ino == 0 || inodes[e.ino] {
			t.Errorf("%s: inode %d zero or reused", e.name, e.ino)
		}
		inodes[e.ino] = true
	}
}

func TestFileTreeRejectsBadPaths(t *testing.T) {
	tree := newFileTree()
	for _, p := range []string{"..", "../etc/passwd", "/", "."} {
		if err := tree.file(p, 0o644, nil); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if err := tree.file("a", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := tree.file("a/b", 0o644, nil); err == nil {
		t.Error("a file below a regular file accepted")
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, fmt.Errorf("disk on fire")
	}
	w.after--
	return len(p), nil
}

func TestNewcWriteErrorReported(t *testing.T) {
	tree := newFileTree()
	if err := tree.file("x", 0o644, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := tree.writeCPIO(&failingWriter{after: 1}, 0); err == nil {
		t.Fatal("write error not reported")
	}
}
