package qcow2_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gureum/storage"
	"gureum/storage/qcow2"
	"gureum/storage/raw"
)

// The benchmarks compare qcow2 with raw on the same file system: 1 MiB
// sequential and 4 KiB random reads and writes through the Disk interface
// (page cache included; make bench measures through a guest).

const benchSize = 128 << 20

type benchFormat struct {
	name   string
	create func(b *testing.B, path string)
	open   func(path string) (storage.Disk, error)
}

var benchFormats = []benchFormat{
	{"raw",
		func(b *testing.B, path string) {
			if err := raw.Create(path, benchSize); err != nil {
				b.Fatal(err)
			}
		},
		func(path string) (storage.Disk, error) { return raw.Open(path, false) }},
	{"qcow2",
		func(b *testing.B, path string) {
			if err := qcow2.Create(path, benchSize, qcow2.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		},
		func(path string) (storage.Disk, error) { return qcow2.Open(path, qcow2.Options{}) }},
}

// benchDisk creates a disk, filled with data when filled is set.
func benchDisk(b *testing.B, f benchFormat, filled bool) storage.Disk {
	path := filepath.Join(b.TempDir(), "bench."+f.name)
	f.create(b, path)
	d, err := f.open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if filled {
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for off := int64(0); off < benchSize; off += int64(len(buf)) {
			if _, err := d.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	return d
}

func BenchmarkSequential1MiB(b *testing.B) {
	for _, f := range benchFormats {
		for _, write := range []bool{true, false} {
			name := f.name + "/read"
			if write {
				name = f.name + "/write"
			}
			b.Run(name, func(b *testing.B) {
				d := benchDisk(b, f, !write)
				buf := make([]byte, 1<<20)
				b.SetBytes(int64(len(buf)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := int64(i) * int64(len(buf)) % benchSize
					var err error
					if write {
						_, err = d.WriteAt(buf, off)
					} else {
						_, err = d.ReadAt(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkRandom4KiB(b *testing.B) {
	for _, f := range benchFormats {
		for _, write := range []bool{true, false} {
			name := f.name + "/read"
			if write {
				name = f.name + "/write"
			}
			b.Run(name, func(b *testing.B) {
				d := benchDisk(b, f, true)
				buf := make([]byte, 4096)
				r := rand.New(rand.NewPCG(1, 2))
				b.SetBytes(int64(len(buf)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := r.Int64N(benchSize/4096) * 4096
					var err error
					if write {
						_, err = d.WriteAt(buf, off)
					} else {
						_, err = d.ReadAt(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
