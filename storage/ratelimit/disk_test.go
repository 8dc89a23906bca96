package ratelimit

import (
	"path/filepath"
	"testing"
	"time"

	"gureum/storage/raw"
)

// fakeClock advances only when slept on.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time        { return c.now }
func (c *fakeClock) Sleep(d time.Duration) { c.now = c.now.Add(d) }

func TestDiskWaitsForTheLimiter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	if err := raw.Create(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	d, err := raw.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	clock := &fakeClock{now: t0}
	ld := NewDisk(d, New(Limits{OpsPerSecond: 100, OpsBurst: 10}, t0), clock)
	buf := make([]byte, 4096)
	for i := 0; i < 210; i++ {
		if _, err := ld.WriteAt(buf, int64(i%256)*4096); err != nil {
			t.Fatal(err)
		}
	}
	// 10 from the burst, then 200 at 100 per second.
	if got := clock.now.Sub(t0); got < 1990*time.Millisecond || got > 2010*time.Millisecond {
		t.Fatalf("210 writes at 100 IOPS with a burst of 10 took %v of fake time, want 2s", got)
	}
	if err := ld.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := ld.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
}
