package acpi

import (
	"encoding/binary"

	"gureum/vmm/layout"
)

// The FADT (Fixed ACPI Description Table, signature "FACP") describes the
// fixed power-management hardware. On a hardware-reduced machine most of it
// is zero; what matters is:
//   - Flags.HW_REDUCED_ACPI, which tells the OS not to look for PM1 blocks,
//     an SCI or the legacy ACPI enable handshake;
//   - SLEEP_CONTROL_REG / SLEEP_STATUS_REG, the registers through which the
//     OS enters a sleep state, S5 (soft off) for poweroff: it writes
//     (SLP_TYP << 2) | SLP_EN to the control register, with SLP_TYP taken
//     from the DSDT's \_S5 package;
//   - RESET_REG, which lets "reboot" go through ACPI: writing 0xfe to the
//     keyboard controller's command port pulses the CPU reset line, the
//     same thing Linux's keyboard-controller reboot does;
//   - X_DSDT, the address of the DSDT;
//   - IAPC_BOOT_ARCH, which tells the OS an i8042 is present and no VGA is.

// FADT layout (ACPI 6.5, table 5.9), byte offsets.
const (
	fadtSize           = 276
	fadtRevision       = 6
	fadtMinorRevision  = 5
	fadtIAPCBootArch   = 109
	fadtFlags          = 112
	fadtResetReg       = 116
	fadtResetValue     = 128
	fadtMinorVersion   = 131
	fadtXDSDT          = 140
	fadtSleepControl   = 244
	fadtSleepStatus    = 256
	fadtHypervisorID   = 268
	gasSize            = 12
	gasSystemIO        = 1 // address space ID: I/O ports
	gasAccessByte      = 1
	iapc8042           = 1 << 1 // an i8042 keyboard controller is present
	iapcNoVGA          = 1 << 2 // do not probe VGA
	flagPowerButton    = 1 << 4 // power button is not a fixed feature
	flagSleepButton    = 1 << 5 // sleep button is not a fixed feature
	flagResetRegSup    = 1 << 10
	flagHWReducedACPI  = 1 << 20
	i8042ResetValue    = 0xfe
	hypervisorVendorID = "GUREUM"
)

// putGAS writes a Generic Address Structure: where a register lives.
//
//	0 AddressSpaceID  1 BitWidth  2 BitOffset  3 AccessSize  4 Address (u64)
func putGAS(b []byte, port uint64, bits byte) {
	b[0] = gasSystemIO
	b[1] = bits
	b[2] = 0
	b[3] = gasAccessByte
	binary.LittleEndian.PutUint64(b[4:], port)
}

func buildFADT(dsdt uint64) []byte {
	b := newTable("FACP", fadtRevision, fadtSize)
	le := binary.LittleEndian
	le.PutUint16(b[fadtIAPCBootArch:], iapc8042|iapcNoVGA)
	le.PutUint32(b[fadtFlags:], flagHWReducedACPI|flagResetRegSup|flagPowerButton|flagSleepButton)
	putGAS(b[fadtResetReg:], layout.I8042Command, 8)
	b[fadtResetValue] = i8042ResetValue
	b[fadtMinorVersion] = fadtMinorRevision
	// Only the 64-bit X_DSDT is set; the 32-bit DSDT field stays 0 so the
	// two cannot disagree.
	le.PutUint64(b[fadtXDSDT:], dsdt)
	putGAS(b[fadtSleepControl:], layout.ACPISleepCtl, 8)
	putGAS(b[fadtSleepStatus:], layout.ACPISleepSts, 8)
	copy(b[fadtHypervisorID:fadtHypervisorID+8], hypervisorVendorID)
	return finish(b)
}
