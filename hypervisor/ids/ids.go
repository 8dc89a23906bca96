// Package ids makes and checks EC2-style resource ids: a prefix naming the
// kind (i-, vol-, snap-, ami-), a dash, and 17 lower-case hex digits, the
// long form EC2 has used since 2016 (i-0123456789abcdef0).
//
// Ids are random rather than sequential so that two daemons, or a daemon
// restored from an old backup, never hand out the same id, and so that an
// id says nothing about how many resources exist.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// Kind is the prefix of an id, without the dash.
type Kind string

// Kinds of resource id.
const (
	Instance Kind = "i"
	Volume   Kind = "vol"
	Snapshot Kind = "snap"
	Image    Kind = "ami"
)

// HexDigits is how many hex digits follow the dash.
const HexDigits = 17

// New returns a fresh random id of the given kind. It reads the system's
// cryptographic random source, which does not fail on Linux after boot; if
// it ever did, a panic is better than handing out a duplicate id.
func New(k Kind) string {
	var b [9]byte // 72 bits, of which 68 are used
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("ids: random source failed: %v", err))
	}
	return string(k) + "-" + hex.EncodeToString(b[:])[:HexDigits]
}

// Valid reports whether s is a well-formed id of kind k.
func Valid(k Kind, s string) bool {
	rest, ok := strings.CutPrefix(s, string(k)+"-")
	if !ok || len(rest) != HexDigits {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// KindOf returns the kind of a well-formed id, or false.
func KindOf(s string) (Kind, bool) {
	for _, k := range []Kind{Instance, Volume, Snapshot, Image} {
		if Valid(k, s) {
			return k, true
		}
	}
	return "", false
}
