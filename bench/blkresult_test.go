package main

import (
	"math"
	"testing"
)

func TestParseBlkResult(t *testing.T) {
	line := "selftest blk: ok capacity 268435456 bytes, wrote 134217728 bytes in 128 requests 646 ms 207 MB/s, " +
		"read 134217728 bytes in 128 requests 391 ms 342 MB/s, sum 0x586813adcef58000, flush ok, id empty"
	r, err := parseBlkResult(line)
	if err != nil {
		t.Fatal(err)
	}
	// Recomputed from bytes and ms, not the guest's rounded figure.
	if math.Abs(r.writeMBs-134217728/1e6/0.646) > 0.01 || math.Abs(r.readMBs-134217728/1e6/0.391) > 0.01 {
		t.Fatalf("got %+v", r)
	}

	// Below 10 ms the guest's own figure is kept.
	r, err = parseBlkResult("selftest blk: ok capacity 1 bytes, wrote 4194304 bytes in 4 requests 2 ms 2000 MB/s, " +
		"read 4194304 bytes in 4 requests 0 ms 0 MB/s, sum 0x1")
	if err != nil {
		t.Fatal(err)
	}
	if r.writeMBs != 2000 || r.readMBs != 0 {
		t.Fatalf("got %+v, want the printed 2000 and 0", r)
	}

	for _, bad := range []string{
		"selftest blk: ok capacity 268435456 bytes, wrote 13421772",
		"selftest blk: ok read-only disk, capacity 1 bytes, read 4096 bytes in 1 requests 10 ms 0 MB/s, sum 0x0",
	} {
		if _, err := parseBlkResult(bad); err == nil {
			t.Errorf("parseBlkResult(%q) succeeded", bad)
		}
	}
}

func TestBlkResultLineNeedsWholeLine(t *testing.T) {
	c := newConsole()
	c.add([]byte("gureum-testguest: ready\nselftest blk: ok capacity 268435456 bytes, wrote 13421772"), 1)
	if _, _, found, _, _ := c.find(blkResultLine); found {
		t.Fatal("matched half a line")
	}
	c.add([]byte("8 bytes in 128 requests 646 ms 207 MB/s\r\n"), 2)
	m, at, found, _, _ := c.find(blkResultLine)
	if !found || m[1] != "ok" || at != 2 {
		t.Fatalf("found %v %q at %v", found, m, at)
	}
}
