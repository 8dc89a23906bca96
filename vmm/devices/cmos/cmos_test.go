package cmos

import (
	"testing"
	"time"

	"gureum/vmm/devices"
	"gureum/vmm/layout"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// A leap day, a Thursday, in the afternoon, half-way through a second.
var start = time.Date(2024, time.February, 29, 13, 5, 9, 500e6, time.UTC)

func newRTC(mem uint64) (*RTC, *fakeClock) {
	clk := &fakeClock{t: start}
	return New(Config{MemoryBytes: mem, Now: clk.now}), clk
}

func read(r *RTC, i byte) byte {
	r.Write(0, []byte{i})
	b := []byte{0}
	r.Read(1, b)
	return b[0]
}

func write(r *RTC, i, v byte) {
	r.Write(0, []byte{i})
	r.Write(1, []byte{v})
}

func readTime(r *RTC) []byte {
	var got []byte
	for _, i := range []byte{regSeconds, regMinutes, regHours, regWeekday, regDay, regMonth, regYear, regCentury} {
		got = append(got, read(r, i))
	}
	return got
}

func expectBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if string(got) != string(want) {
		t.Fatalf("%s = % x, want % x", what, got, want)
	}
}

func TestTimeInBCD(t *testing.T) {
	r, _ := newRTC(0)
	// sec min hour weekday(Thursday=5) day month year century
	expectBytes(t, "BCD time", readTime(r), []byte{0x09, 0x05, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20})
}

func TestTimeInBinaryAnd12Hour(t *testing.T) {
	r, _ := newRTC(0)
	write(r, regB, regBBinary|regB24Hour)
	expectBytes(t, "binary time", readTime(r), []byte{9, 5, 13, 5, 29, 2, 24, 20})
	write(r, regB, regBBinary)
	if h := read(r, regHours); h != 1|hourPM {
		t.Fatalf("12-hour binary hours = %#x, want 0x81", h)
	}
	write(r, regB, 0)
	if h := read(r, regHours); h != 0x01|hourPM {
		t.Fatalf("12-hour BCD hours = %#x, want 0x81", h)
	}
}

func TestMidnightIs12AM(t *testing.T) {
	clk := &fakeClock{t: time.Date(2023, 12, 31, 0, 30, 0, 0, time.UTC)}
	r := New(Config{Now: clk.now})
	write(r, regB, 0) // 12-hour BCD
	if h := read(r, regHours); h != 0x12 {
		t.Fatalf("hours at 00:30 in 12-hour mode = %#x, want 0x12", h)
	}
}

func TestClockFollowsHost(t *testing.T) {
	r, clk := newRTC(0)
	clk.t = clk.t.Add(61 * time.Second)
	expectBytes(t, "time a minute later", readTime(r)[:3], []byte{0x10, 0x06, 0x13})
}

// TestGuestSetsClock sets the clock as Linux's mc146818_set_time does: SET
// in register B, write the fields, clear SET.
func TestGuestSetsClock(t *testing.T) {
	r, clk := newRTC(0)
	b := read(r, regB)
	write(r, regB, b|regBSet)
	// Frozen while SET: the host clock moving changes nothing.
	clk.t = clk.t.Add(5 * time.Second)
	if s := read(r, regSeconds); s != 0x09 {
		t.Fatalf("seconds while SET = %#x, want the frozen 0x09", s)
	}
	for _, f := range []struct{ reg, v byte }{
		{regYear, 0x99}, {regCentury, 0x19}, {regMonth, 0x12}, {regDay, 0x31},
		{regHours, 0x23}, {regMinutes, 0x59}, {regSeconds, 0x50},
	} {
		write(r, f.reg, f.v)
	}
	write(r, regB, b)
	expectBytes(t, "guest-set time", readTime(r), []byte{0x50, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19})
	// It keeps running from there, across the century.
	clk.t = clk.t.Add(15 * time.Second)
	expectBytes(t, "time 15 s later", readTime(r), []byte{0x05, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20})
}

func TestWriteOneFieldOfRunningClock(t *testing.T) {
	r, _ := newRTC(0)
	write(r, regMinutes, 0x45)
	expectBytes(t, "time", readTime(r)[:3], []byte{0x09, 0x45, 0x13})
}

func TestInvalidGuestTimeIgnored(t *testing.T) {
	r, _ := newRTC(0)
	write(r, regB, regB24Hour|regBSet)
	write(r, regMonth, 0x02)
	write(r, regDay, 0x30) // 30 February
	write(r, regB, regB24Hour)
	expectBytes(t, "time", readTime(r)[3:6], []byte{0x05, 0x29, 0x02})
	write(r, regSeconds, 0x7a) // not BCD
	if s := read(r, regSeconds); s != 0x09 {
		t.Fatalf("seconds = %#x after invalid write, want 0x09", s)
	}
}

func TestStatusRegisters(t *testing.T) {
	r, _ := newRTC(0)
	if a := read(r, regA); a != regAPowerOn {
		t.Fatalf("register A = %#x", a)
	}
	write(r, regA, 0xff)
	if a := read(r, regA); a&regAUIP != 0 {
		t.Fatal("UIP writable")
	}
	if b := read(r, regB); b != regB24Hour {
		t.Fatalf("register B = %#x, want 24-hour BCD", b)
	}
	write(r, regB, 0x42) // PIE: stored, no interrupt
	if c := read(r, regC); c != 0 {
		t.Fatalf("register C = %#x", c)
	}
	write(r, regD, 0)
	if d := read(r, regD); d != regDValid {
		t.Fatalf("register D = %#x, want valid battery", d)
	}
}

func TestIndexIgnoresNMIBit(t *testing.T) {
	r, _ := newRTC(0)
	r.Write(0, []byte{0x80 | regCentury})
	b := []byte{0}
	r.Read(1, b)
	if b[0] != 0x20 {
		t.Fatalf("century through index with NMI bit = %#x", b[0])
	}
	write(r, 0x80|0x40, 0x5a)
	if v := read(r, 0x40); v != 0x5a {
		t.Fatalf("RAM byte 0x40 = %#x", v)
	}
	r.Read(0, b)
	if b[0] != 0xff {
		t.Fatalf("index port reads %#x, want 0xff", b[0])
	}
}

func TestMemorySize(t *testing.T) {
	for _, c := range []struct {
		name     string
		mem      uint64
		ext      int // KiB above 1 MiB
		above16M int // 64 KiB units
		above4G  int // 64 KiB units
	}{
		{"8 MiB", 8 << 20, 7 << 10, 0, 0},
		{"512 MiB", 512 << 20, 0xffff, (512 - 16) << 4, 0},
		{"8 GiB", 8 << 30, 0xffff, (3<<30 - 16<<20) >> 16, (8<<30 - 3<<30) >> 16},
	} {
		r, _ := newRTC(c.mem)
		word := func(i byte) int { return int(read(r, i)) | int(read(r, i+1))<<8 }
		if got := word(regBaseMemory); got != 640 {
			t.Errorf("%s: base memory %d KiB", c.name, got)
		}
		if got := word(regExtMemory); got != c.ext {
			t.Errorf("%s: extended memory %d KiB, want %d", c.name, got, c.ext)
		}
		if got := word(regExtMemoryCopy); got != c.ext {
			t.Errorf("%s: extended memory copy %d KiB, want %d", c.name, got, c.ext)
		}
		if got := word(regMemAbove16M); got != c.above16M {
			t.Errorf("%s: above 16 MiB %d units, want %d", c.name, got, c.above16M)
		}
		if got := word(regMemAbove4G) | int(read(r, regMemAbove4G+2))<<16; got != c.above4G {
			t.Errorf("%s: above 4 GiB %d units, want %d", c.name, got, c.above4G)
		}
	}
}

func TestAttachAndWideAccess(t *testing.T) {
	var bus devices.Bus
	r, _ := newRTC(0)
	if err := r.Attach(&bus); err != nil {
		t.Fatal(err)
	}
	// One 16-bit write: index, then data.
	if !bus.Write(layout.CMOSIndex, []byte{0x50, 0x77}) {
		t.Fatal("bus refused the write")
	}
	b := []byte{0}
	if !bus.Read(layout.CMOSData, b) || b[0] != 0x77 {
		t.Fatalf("RAM byte 0x50 = %#x", b[0])
	}
}
