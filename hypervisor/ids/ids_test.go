package ids

import "testing"

func TestNewIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range []Kind{Instance, Volume, Snapshot, Image} {
		for range 1000 {
			id := New(k)
			if !Valid(k, id) {
				t.Fatalf("%q is not a valid %s id", id, k)
			}
			if got, ok := KindOf(id); !ok || got != k {
				t.Fatalf("KindOf(%q) = %q, %v", id, got, ok)
			}
			if seen[id] {
				t.Fatalf("duplicate id %q", id)
			}
			seen[id] = true
		}
	}
}

func TestValidRejectsMalformed(t *testing.T) {
	for _, s := range []string{
		"", "i-", "i-0123456789abcdef", "i-0123456789abcdef01", "i-0123456789ABCDEF0",
		"i-0123456789abcdefg", "vol-0123456789abcdef0", "i0123456789abcdef0", "x-0123456789abcdef0",
		" i-0123456789abcdef0",
	} {
		if Valid(Instance, s) {
			t.Errorf("%q accepted as an instance id", s)
		}
	}
	if !Valid(Instance, "i-0123456789abcdef0") || !Valid(Snapshot, "snap-0123456789abcdef0") {
		t.Error("well-formed ids rejected")
	}
}
