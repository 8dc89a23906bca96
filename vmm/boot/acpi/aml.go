package acpi

import (
	"encoding/binary"
	"fmt"
)

// AML (ACPI Machine Language) is the bytecode of the DSDT. Firmware usually
// compiles it from ASL source with iasl; our DSDT is a handful of objects,
// so this file encodes them directly. Every encoder returns the bytes of one
// complete AML term. Opcode values are from the ACPI 6.5 specification,
// chapter 20 ("ACPI Machine Language Specification").

// AML opcodes used here.
const (
	amlZeroOp       = 0x00
	amlOneOp        = 0x01
	amlNameOp       = 0x08 // Name(NameString, DataRefObject)
	amlBytePrefix   = 0x0a // followed by a 1-byte integer
	amlWordPrefix   = 0x0b // 2-byte integer
	amlDWordPrefix  = 0x0c // 4-byte integer
	amlQWordPrefix  = 0x0e // 8-byte integer
	amlScopeOp      = 0x10 // Scope(PkgLength NameString TermList)
	amlBufferOp     = 0x11 // Buffer(PkgLength BufferSize ByteList)
	amlPackageOp    = 0x12 // Package(PkgLength NumElements ElementList)
	amlExtOpPrefix  = 0x5b
	amlDeviceOp     = 0x82 // after ExtOpPrefix: Device(PkgLength NameString TermList)
	amlRootChar     = '\\'
	amlMaxPkgLength = 1<<28 - 1
)

// amlPkgLength encodes the length of a package-like term: the number of
// bytes from the start of the PkgLength field itself to the end of the
// term. Short terms (under 64 bytes) use one byte. Longer ones use a lead
// byte whose top two bits say how many bytes follow (1..3); the lead byte
// keeps the lowest 4 bits of the length and the following bytes the rest,
// least significant first.
func amlPkgLength(contentLen int) []byte {
	if contentLen+1 < 0x40 {
		return []byte{byte(contentLen + 1)}
	}
	for extra := 1; extra <= 3; extra++ {
		total := contentLen + 1 + extra
		if total < 1<<(4+8*extra) {
			out := []byte{byte(extra<<6) | byte(total&0xf)}
			for i := 0; i < extra; i++ {
				out = append(out, byte(total>>(4+8*i)))
			}
			return out
		}
	}
	panic("aml: package longer than 2^28 bytes") // callers bound their sizes
}

// amlInteger encodes an integer constant in the shortest form: ZeroOp and
// OneOp are one byte; otherwise a prefix byte says how wide the value is.
func amlInteger(v uint64) []byte {
	le := binary.LittleEndian
	switch {
	case v == 0:
		return []byte{amlZeroOp}
	case v == 1:
		return []byte{amlOneOp}
	case v <= 0xff:
		return []byte{amlBytePrefix, byte(v)}
	case v <= 0xffff:
		return le.AppendUint16([]byte{amlWordPrefix}, uint16(v))
	case v <= 0xffffffff:
		return le.AppendUint32([]byte{amlDWordPrefix}, uint32(v))
	}
	return le.AppendUint64([]byte{amlQWordPrefix}, v)
}

// amlDWord encodes a 32-bit constant always with the DWord prefix, as
// EISA IDs and _PRT addresses are conventionally written.
func amlDWord(v uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{amlDWordPrefix}, v)
}

// amlNameSeg checks a four-character name segment (A-Z, 0-9, _; not
// starting with a digit).
func amlNameSeg(s string) []byte {
	if len(s) != 4 {
		panic(fmt.Sprintf("aml: name segment %q is not 4 characters", s))
	}
	return []byte(s)
}

// amlName encodes Name(name, value): it creates a named object in the
// current scope.
func amlName(name string, value []byte) []byte {
	out := append([]byte{amlNameOp}, amlNameSeg(name)...)
	return append(out, value...)
}

// amlPackage encodes Package(n){elements...}: PackageOp, PkgLength, the
// element count (one byte, so at most 255), then the elements.
func amlPackage(elements ...[]byte) []byte {
	body := []byte{byte(len(elements))}
	for _, e := range elements {
		body = append(body, e...)
	}
	return withPkgLength([]byte{amlPackageOp}, body)
}

// amlBuffer encodes Buffer(){data}: BufferOp, PkgLength, the size as an
// integer term, then the bytes.
func amlBuffer(data []byte) []byte {
	body := append(amlInteger(uint64(len(data))), data...)
	return withPkgLength([]byte{amlBufferOp}, body)
}

// amlScope encodes Scope(path){terms}; path is a full name such as
// "\\_SB_".
func amlScope(path string, terms ...[]byte) []byte {
	body := []byte(path)
	for _, t := range terms {
		body = append(body, t...)
	}
	return withPkgLength([]byte{amlScopeOp}, body)
}

// amlDevice encodes Device(name){terms}.
func amlDevice(name string, terms ...[]byte) []byte {
	body := amlNameSeg(name)
	for _, t := range terms {
		body = append(body, t...)
	}
	return withPkgLength([]byte{amlExtOpPrefix, amlDeviceOp}, body)
}

func withPkgLength(op, body []byte) []byte {
	out := append(op, amlPkgLength(len(body))...)
	return append(out, body...)
}

// amlEISAID encodes EisaId("PNP0A03") as its 32-bit integer: the three
// letters packed as 5-bit values (letter - 0x40) into 15 bits, then four
// hex digits of product ID, stored big-endian as a whole and read as a
// little-endian DWord.
func amlEISAID(id string) ([]byte, error) {
	if len(id) != 7 {
		return nil, fmt.Errorf("EISA ID %q is not 7 characters", id)
	}
	var v uint32
	for i := range 3 {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return nil, fmt.Errorf("EISA ID %q: vendor must be 3 capital letters", id)
		}
		v = v<<5 | uint32(c-0x40)
	}
	for i := 3; i < 7; i++ {
		var d byte
		switch c := id[i]; {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return nil, fmt.Errorf("EISA ID %q: product must be 4 hex digits", id)
		}
		v = v<<4 | uint32(d)
	}
	// v holds vendor(15 bits) and product(16 bits) in bits 30..0, most
	// significant first; the stored form is those four bytes big-endian.
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], v)
	return amlDWord(binary.LittleEndian.Uint32(be[:])), nil
}
