package main

import (
	"os"
	"strings"
	"testing"
)

// smapsSample has a file mapping, a large PROT_NONE reservation of the
// kind the Go runtime makes, the guest RAM (shared anonymous, 128 MiB),
// a smaller private anonymous area and the heap.
const smapsSample = `557cda342000-557cda344000 r--p 00000000 fe:00 247026                     /usr/bin/gureum-vmm
Size:                  8 kB
Rss:                   8 kB
VmFlags: rd mr mw me
7f0000000000-7f0040000000 ---p 00000000 00:00 0
Size:            1048576 kB
Rss:                   0 kB
7f1000000000-7f1008000000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)
Size:             131072 kB
KernelPageSize:        4 kB
Rss:                 204 kB
Shared_Dirty:        204 kB
7f2000000000-7f2000400000 rw-p 00000000 00:00 0
Size:               4096 kB
Rss:                1024 kB
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  40 kB
`

func TestParseSmapsPicksGuestRAM(t *testing.T) {
	maps, err := parseSmaps(strings.NewReader(smapsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 5 {
		t.Fatalf("got %d areas, want 5: %+v", len(maps), maps)
	}
	if maps[2].path != "/dev/zero (deleted)" || maps[2].perms != "rw-s" || maps[2].start != 0x7f1000000000 {
		t.Fatalf("guest area parsed as %+v", maps[2])
	}
	ram, ok := guestRAM(maps, 128<<10)
	if !ok {
		t.Fatal("no guest RAM found")
	}
	if ram.sizeKiB != 131072 || ram.rssKiB != 204 {
		t.Fatalf("picked %+v, want the 128 MiB /dev/zero area with 204 kB resident", ram)
	}
	// A guest bigger than every read-write area has no RAM mapping: the
	// 1 GiB PROT_NONE reservation must not be taken for it.
	if ram, ok := guestRAM(maps, 256<<10); ok {
		t.Fatalf("picked %+v for a 256 MiB guest", ram)
	}
}

func TestParseSmapsRejectsGarbage(t *testing.T) {
	for _, in := range []string{
		"Rss: 4 kB\n",                            // value before any area
		"zzzz-0000 rw-p 0 00:00 0\n",             // bad address
		"7f00-7f10 rw-p 0 00:00 0\nSize: lots\n", // bad size
	} {
		if _, err := parseSmaps(strings.NewReader(in)); err == nil {
			t.Errorf("parseSmaps(%q) succeeded", in)
		}
	}
}

func TestMeasureMemoryOfThisProcess(t *testing.T) {
	sizes, err := statusSizes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The test binary is mapped from a file and has a heap.
	if sizes["VmRSS"] <= 0 || sizes["RssFile"] <= 0 || sizes["RssAnon"] <= 0 ||
		sizes["RssFile"]+sizes["RssAnon"] > sizes["VmRSS"] {
		t.Fatalf("status sizes %v", sizes)
	}
	// The test binary has no 128 MiB read-write area.
	if _, err := measureMemory(os.Getpid(), 128); err == nil {
		t.Fatal("measureMemory found guest RAM in the test process")
	}
}
