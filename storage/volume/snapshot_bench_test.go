package volume

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkCreateSnapshot measures taking a snapshot of a volume with
// 1 GiB written, for a 10 GiB and a 1 TiB volume: freezing the top is a
// file creation and two record writes, so the time must not depend on the
// size nor on how much was written (goal: under 100 ms).
//
//	go test -run XXX -bench CreateSnapshot ./storage/volume/
func BenchmarkCreateSnapshot(b *testing.B) {
	needQemu(b)
	for _, sizeGiB := range []int64{10, 1024} {
		b.Run(fmt.Sprintf("%dGiB", sizeGiB), func(b *testing.B) {
			s, _ := openTestStore(b, nil, testImages)
			v, err := s.CreateVolume(CreateVolumeRequest{Spec: Spec{SizeGiB: sizeGiB}})
			if err != nil {
				b.Fatal(err)
			}
			// 1 GiB of data in 1 MiB pieces spread over the volume.
			top := mustPath(b, s, v.ID)
			stride := v.SizeBytes() / 1024
			var script []string
			for i := int64(0); i < 1024; i++ {
				script = append(script, "-c", fmt.Sprintf("write -P 0x%02x %d 1M", byte(i), i*stride))
			}
			args := append([]string{"-f", "qcow2"}, script...)
			if out, err := exec.Command("qemu-io", append(args, top)...).CombinedOutput(); err != nil {
				b.Fatalf("qemu-io: %v: %s", err, out)
			}
			b.ResetTimer()
			var first time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				sn, err := s.CreateSnapshot(v.ID, "")
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					first = time.Since(start)
					b.ReportMetric(float64(sn.DataBytes)/(1<<20), "first-snapshot-MiB")
				}
			}
			b.ReportMetric(float64(first.Microseconds())/1000, "first-snapshot-ms")
		})
	}
}
