package cmos

import "time"

// The clock registers hold each field either in binary or in BCD (one
// decimal digit per nibble, 59 is 0x59), and the hours in 24-hour form or
// as 1..12 with bit 7 for PM. Register B chooses; the chip does not convert
// stored values when the guest changes the mode, it only counts in the new
// one, so a guest that switches modes rewrites the time.

func toBCD(v int) byte { return byte(v/10<<4 | v%10) }

func fromBCD(b byte) (int, bool) {
	hi, lo := int(b>>4), int(b&0x0f)
	if hi > 9 || lo > 9 {
		return 0, false
	}
	return hi*10 + lo, true
}

// encodeTime stores t in the clock registers of ram in the format of regB.
func encodeTime(t time.Time, b byte, ram *[ramSize]byte) {
	enc := func(v int) byte {
		if b&regBBinary != 0 {
			return byte(v)
		}
		return toBCD(v)
	}
	ram[regSeconds] = enc(t.Second())
	ram[regMinutes] = enc(t.Minute())
	if b&regB24Hour != 0 {
		ram[regHours] = enc(t.Hour())
	} else {
		h := t.Hour() % 12
		if h == 0 {
			h = 12
		}
		ram[regHours] = enc(h)
		if t.Hour() >= 12 {
			ram[regHours] |= hourPM
		}
	}
	ram[regWeekday] = enc(int(t.Weekday()) + 1)
	ram[regDay] = enc(t.Day())
	ram[regMonth] = enc(int(t.Month()))
	ram[regYear] = enc(t.Year() % 100)
	ram[regCentury] = enc(t.Year() / 100)
}

// decodeTime reads the clock registers of ram in the format of regB. It
// reports false for a field out of range (a guest writing garbage). The
// weekday register is not checked: the chip only counts it.
func decodeTime(ram *[ramSize]byte, b byte) (time.Time, bool) {
	ok := true
	dec := func(v byte, lo, hi int) int {
		var n int
		if b&regBBinary != 0 {
			n = int(v)
		} else {
			var valid bool
			if n, valid = fromBCD(v); !valid {
				ok = false
			}
		}
		if n < lo || n > hi {
			ok = false
		}
		return n
	}
	sec := dec(ram[regSeconds], 0, 59)
	minute := dec(ram[regMinutes], 0, 59)
	var hour int
	if b&regB24Hour != 0 {
		hour = dec(ram[regHours], 0, 23)
	} else {
		hour = dec(ram[regHours]&^hourPM, 1, 12) % 12
		if ram[regHours]&hourPM != 0 {
			hour += 12
		}
	}
	day := dec(ram[regDay], 1, 31)
	month := dec(ram[regMonth], 1, 12)
	year := dec(ram[regCentury], 0, 99)*100 + dec(ram[regYear], 0, 99)
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // 31 February and the like
		return time.Time{}, false
	}
	return t, true
}
