package volume

import (
	"fmt"

	"gureum/storage/ratelimit"
)

// Type is an EBS volume type. It fixes the size range and how IOPS and
// throughput are set: provisioned (gp3, io2) or derived from the size
// (st1, sc1).
type Type string

// The volume types gureum offers, with AWS's names.
const (
	// GP3 is general purpose SSD: 3000 IOPS and 125 MiB/s whatever the
	// size, more of either provisioned on request.
	GP3 Type = "gp3"
	// IO2 is provisioned-IOPS SSD: the user names the IOPS.
	IO2 Type = "io2"
	// ST1 is throughput-optimised HDD: throughput grows with size.
	ST1 Type = "st1"
	// SC1 is cold HDD: like st1, slower and cheaper.
	SC1 Type = "sc1"
)

// Types lists every volume type.
var Types = []Type{GP3, IO2, ST1, SC1}

// Limits of the volume types (AWS EBS documentation, "Amazon EBS volume
// types"). Sizes are in GiB, throughput in MiB/s.
const (
	MaxSizeGiB = 16 << 10 // 16 TiB for every type

	GP3MinSizeGiB    = 1
	GP3BaselineIOPS  = 3000
	GP3MaxIOPS       = 16000
	GP3IOPSPerGiB    = 500 // most IOPS per GiB above the baseline
	GP3BaselineMiBps = 125
	GP3MaxMiBps      = 1000

	IO2MinSizeGiB = 4
	IO2MinIOPS    = 100
	IO2MaxIOPS    = 64000
	IO2IOPSPerGiB = 500
	IO2MaxMiBps   = 1000
	io2KiBPerOp   = 256 // io2 throughput is IOPS × 256 KiB, up to IO2MaxMiBps

	HDDMinSizeGiB       = 125
	ST1BaseMiBpsPerTiB  = 40
	ST1BurstMiBpsPerTiB = 250
	ST1MaxMiBps         = 500
	ST1MaxIOPS          = 500
	SC1BaseMiBpsPerTiB  = 12
	SC1BurstMiBpsPerTiB = 80
	SC1MaxMiBps         = 250
	SC1MaxIOPS          = 250
)

// hddBurstSeconds is how long a full st1/sc1 burst bucket lets a volume
// run at its burst rate instead of its base rate. AWS's bucket holds much
// more (about 1 TiB of credit per TiB); gureum keeps a short one so a
// test can see the base rate, which is what the volume guarantees.
const hddBurstSeconds = 10

// Spec is the performance part of a volume: type, size, IOPS, throughput.
type Spec struct {
	Type    Type  `json:"volumeType"`
	SizeGiB int64 `json:"sizeGiB"`
	// IOPS is the provisioned IOPS (gp3, io2) or the type's cap (st1, sc1).
	IOPS int64 `json:"iops"`
	// Throughput is in MiB/s: provisioned for gp3, derived for the others.
	Throughput int64 `json:"throughputMiBps"`
}

// Normalize fills what the user left at zero with the type's defaults and
// the derived values (io2 throughput, st1/sc1 IOPS and throughput), then
// checks every limit. The error is an InvalidParameterValue.
func (s Spec) Normalize() (Spec, error) {
	if s.Type == "" {
		s.Type = GP3
	}
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, errorf(InvalidParameterValue, format, a...)
	}
	minSize := map[Type]int64{GP3: GP3MinSizeGiB, IO2: IO2MinSizeGiB, ST1: HDDMinSizeGiB, SC1: HDDMinSizeGiB}[s.Type]
	if minSize == 0 {
		return bad("volume type %q is not one of gp3, io2, st1, sc1", s.Type)
	}
	if s.SizeGiB < minSize || s.SizeGiB > MaxSizeGiB {
		return bad("size %d GiB is outside %d–%d GiB for %s", s.SizeGiB, minSize, MaxSizeGiB, s.Type)
	}
	switch s.Type {
	case GP3:
		if s.IOPS == 0 {
			s.IOPS = GP3BaselineIOPS
		}
		if s.Throughput == 0 {
			s.Throughput = GP3BaselineMiBps
		}
		if s.IOPS < GP3BaselineIOPS || s.IOPS > GP3MaxIOPS {
			return bad("gp3 IOPS %d is outside %d–%d", s.IOPS, GP3BaselineIOPS, GP3MaxIOPS)
		}
		if s.IOPS > GP3BaselineIOPS && s.IOPS > GP3IOPSPerGiB*s.SizeGiB {
			return bad("gp3 IOPS %d exceed %d per GiB of a %d GiB volume", s.IOPS, GP3IOPSPerGiB, s.SizeGiB)
		}
		if s.Throughput < GP3BaselineMiBps || s.Throughput > GP3MaxMiBps {
			return bad("gp3 throughput %d MiB/s is outside %d–%d", s.Throughput, GP3BaselineMiBps, GP3MaxMiBps)
		}
		if s.Throughput > GP3BaselineMiBps && s.Throughput*4 > s.IOPS {
			return bad("gp3 throughput %d MiB/s exceeds 0.25 MiB/s per provisioned IOPS (%d IOPS)", s.Throughput, s.IOPS)
		}
	case IO2:
		if s.IOPS == 0 {
			return bad("io2 volumes need IOPS (%d–%d)", IO2MinIOPS, IO2MaxIOPS)
		}
		if s.IOPS < IO2MinIOPS || s.IOPS > IO2MaxIOPS {
			return bad("io2 IOPS %d is outside %d–%d", s.IOPS, IO2MinIOPS, IO2MaxIOPS)
		}
		if s.IOPS > IO2IOPSPerGiB*s.SizeGiB {
			return bad("io2 IOPS %d exceed %d per GiB of a %d GiB volume", s.IOPS, IO2IOPSPerGiB, s.SizeGiB)
		}
		if s.Throughput != 0 && s.Throughput != io2Throughput(s.IOPS) {
			return bad("io2 throughput follows from IOPS and cannot be set")
		}
		s.Throughput = io2Throughput(s.IOPS)
	case ST1, SC1:
		if s.IOPS != 0 && s.IOPS != hddIOPS(s.Type) {
			return bad("%s IOPS cannot be provisioned", s.Type)
		}
		if s.Throughput != 0 && s.Throughput != hddBaseMiBps(s.Type, s.SizeGiB) {
			return bad("%s throughput follows from size and cannot be set", s.Type)
		}
		s.IOPS = hddIOPS(s.Type)
		s.Throughput = hddBaseMiBps(s.Type, s.SizeGiB)
	}
	return s, nil
}

func io2Throughput(iops int64) int64 {
	return min(iops*io2KiBPerOp/1024, IO2MaxMiBps)
}

func hddIOPS(t Type) int64 {
	if t == ST1 {
		return ST1MaxIOPS
	}
	return SC1MaxIOPS
}

// hddBaseMiBps and hddBurstMiBps scale with size per TiB, capped by the
// type's maximum.
func hddBaseMiBps(t Type, sizeGiB int64) int64 {
	if t == ST1 {
		return min(ST1BaseMiBpsPerTiB*sizeGiB/1024, ST1MaxMiBps)
	}
	return min(SC1BaseMiBpsPerTiB*sizeGiB/1024, SC1MaxMiBps)
}

func hddBurstMiBps(t Type, sizeGiB int64) int64 {
	if t == ST1 {
		return min(ST1BurstMiBpsPerTiB*sizeGiB/1024, ST1MaxMiBps)
	}
	return min(SC1BurstMiBpsPerTiB*sizeGiB/1024, SC1MaxMiBps)
}

// Limits are the token-bucket caps the VMM enforces on the volume's drive.
// SSD types promise a steady rate and get a bucket of a tenth of a second;
// HDD types get their base throughput with a bucket that lets them run at
// the burst rate for hddBurstSeconds.
func (s Spec) Limits() ratelimit.Limits {
	const mib = 1 << 20
	l := ratelimit.Limits{
		OpsPerSecond:   float64(s.IOPS),
		BytesPerSecond: float64(s.Throughput) * mib,
	}
	if s.Type == ST1 || s.Type == SC1 {
		burst := hddBurstMiBps(s.Type, s.SizeGiB) - s.Throughput
		l.BytesBurst = float64(max(burst*hddBurstSeconds, s.Throughput)) * mib
	}
	return l
}

// String describes the spec the way EC2 lists it.
func (s Spec) String() string {
	return fmt.Sprintf("%s %d GiB, %d IOPS, %d MiB/s", s.Type, s.SizeGiB, s.IOPS, s.Throughput)
}
