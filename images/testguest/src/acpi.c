/*
 * acpi.c - reading the firmware's ACPI tables.
 *
 * ACPI is how a PC describes itself to an operating system. The guest
 * follows the chain the standard defines:
 *
 *   RSDP ("RSD PTR ", found via hvm_start_info or by scanning the BIOS
 *   area) -> XSDT (or the older RSDT): a list of table addresses ->
 *     "APIC" (MADT): one Local APIC entry per vCPU, the IOAPIC, and
 *                    interrupt source overrides (legacy IRQ -> GSI)
 *     "MCFG": the PCI Express ECAM window, if config space is memory-mapped
 *     "FACP" (FADT): how to power off, and where the DSDT is
 *       DSDT: AML bytecode; we only pick two objects out of it: the \_S5
 *             package (power-off), and _CBA, a PCI host bridge's ECAM base,
 *             for machines that describe ECAM there instead of in an MCFG
 *             table (QEMU's microvm does).
 *
 * Every length and address read here comes from the (untrusted) tables, so
 * each is checked against the table's length and the mapped 4 GiB before
 * it is used.
 */
#include "testguest.h"
#include "x86.h"

struct acpi_info acpi;

/* ACPI Generic Address Structure: a register in memory or I/O space. */
struct gas {
	uint8_t space; /* 0 = system memory, 1 = system I/O */
	uint8_t bit_width, bit_offset, access_size;
	uint64_t address;
};

static struct {
	bool found;
	bool hw_reduced;   /* FADT flag HW_REDUCED_ACPI: no PM1 blocks */
	struct gas sleep_control;
	struct gas pm1a_control;
	uint8_t slp_typ_s5;
	struct gas reset_reg; /* valid if the FADT flag RESET_REG_SUP is set */
	uint8_t reset_value;
} power;

static const uint8_t *dsdt;
static uint32_t dsdt_len;

#define FOUR_GIB 0x100000000ull

static uint32_t read32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t read16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t read64(const uint8_t *p) { return read32(p) | (uint64_t)read32(p + 4) << 32; }

/* table_at returns a table header if it lies in mapped memory, else NULL. */
static const uint8_t *table_at(uint64_t addr, uint32_t *len)
{
	if (addr == 0 || addr + 36 > FOUR_GIB)
		return NULL;
	const uint8_t *t = (const uint8_t *)addr;
	uint32_t n = read32(t + 4);
	if (n < 36 || addr + n > FOUR_GIB)
		return NULL;
	*len = n;
	return t;
}

static bool checksum_ok(const uint8_t *p, uint32_t n)
{
	uint8_t sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum == 0;
}

static const uint8_t *scan_rsdp(uint64_t from, uint64_t to)
{
	for (uint64_t a = from; a + 20 <= to; a += 16)
		if (memcmp((const void *)a, "RSD PTR ", 8) == 0 && checksum_ok((const uint8_t *)a, 20))
			return (const uint8_t *)a;
	return NULL;
}

static void parse_madt(const uint8_t *t, uint32_t len)
{
	for (uint32_t off = 44; off + 2 <= len;) {
		const uint8_t *e = t + off;
		uint8_t type = e[0], elen = e[1];
		if (elen < 2 || off + elen > len)
			break;
		if (type == 0 && elen >= 8) {
			/* Processor Local APIC: usable if enabled (bit 0). */
			if ((read32(e + 4) & 1) && acpi.cpu_count < MAX_CPUS)
				acpi.apic_ids[acpi.cpu_count++] = e[3];
		} else if (type == 1 && elen >= 12 && acpi.ioapic_addr == 0) {
			acpi.ioapic_addr = read32(e + 4);
			acpi.ioapic_gsi_base = read32(e + 8);
		} else if (type == 2 && elen >= 10 && e[3] == 1) {
			/* Interrupt Source Override for ISA IRQ 1 (keyboard). */
			acpi.keyboard_gsi = read32(e + 4);
			acpi.keyboard_level_low = (read16(e + 8) & 3) == 3;
		}
		off += elen;
	}
}

static void parse_mcfg(const uint8_t *t, uint32_t len)
{
	/* Entries of 16 bytes after 8 reserved bytes; we use segment 0. */
	for (uint32_t off = 44; off + 16 <= len; off += 16) {
		const uint8_t *e = t + off;
		if (read16(e + 8) != 0)
			continue;
		acpi.ecam_base = read64(e);
		acpi.ecam_bus_start = e[10];
		acpi.ecam_bus_end = e[11];
		return;
	}
}

/*
 * find_s5 picks SLP_TYPa out of the DSDT's "Name(_S5, Package(){a, b, ...})".
 * In AML that is: NameOp(0x08) "_S5_" PackageOp(0x12) PkgLength NumElements
 * then the first element, a ZeroOp/OneOp or a BytePrefix(0x0a) constant.
 */
static bool find_s5(const uint8_t *d, uint32_t len, uint8_t *typ)
{
	for (uint32_t i = 36; i + 10 < len; i++) {
		if (memcmp(d + i, "_S5_", 4) != 0)
			continue;
		if (!(d[i - 1] == 0x08 || (d[i - 1] == '\\' && d[i - 2] == 0x08)))
			continue;
		uint32_t p = i + 4;
		if (d[p++] != 0x12)
			continue;
		p += 1 + (d[p] >> 6); /* PkgLength: bits 7:6 count extra bytes */
		p++;                  /* NumElements */
		if (p + 2 > len)
			return false;
		switch (d[p]) {
		case 0x0a:
			*typ = d[p + 1];
			break;
		case 0x00:
		case 0x01:
			*typ = d[p];
			break;
		default:
			*typ = d[p];
		}
		return true;
	}
	return false;
}

static struct gas read_gas(const uint8_t *p)
{
	struct gas g = {p[0], p[1], p[2], p[3], read64(p + 4)};
	return g;
}

static void parse_fadt(const uint8_t *t, uint32_t len)
{
	if (len < 116)
		return;
	uint32_t flags = read32(t + 112);
	power.hw_reduced = flags & (1u << 20);
	if (len >= 256)
		power.sleep_control = read_gas(t + 244);
	if ((flags & (1u << 10)) && len >= 129) {
		power.reset_reg = read_gas(t + 116);
		power.reset_value = t[128];
	}
	if (len >= 184 && read_gas(t + 172).address)
		power.pm1a_control = read_gas(t + 172);
	else {
		struct gas g = {1, 16, 0, 2, read32(t + 64)};
		power.pm1a_control = g;
	}
	uint64_t dsdt_address = read32(t + 40);
	if (len >= 148 && read64(t + 140))
		dsdt_address = read64(t + 140);
	dsdt = table_at(dsdt_address, &dsdt_len);
	if (dsdt && find_s5(dsdt, dsdt_len, &power.slp_typ_s5))
		power.found = true;
}

/* aml_integer decodes an AML integer constant at d[*p]. */
static bool aml_integer(const uint8_t *d, uint32_t len, uint32_t p, uint64_t *v)
{
	if (p >= len)
		return false;
	switch (d[p]) {
	case 0x00: /* ZeroOp */
	case 0x01: /* OneOp */
		*v = d[p];
		return true;
	case 0x0a: /* BytePrefix */
		if (p + 2 > len)
			return false;
		*v = d[p + 1];
		return true;
	case 0x0b: /* WordPrefix */
		if (p + 3 > len)
			return false;
		*v = read16(d + p + 1);
		return true;
	case 0x0c: /* DWordPrefix */
		if (p + 5 > len)
			return false;
		*v = read32(d + p + 1);
		return true;
	case 0x0e: /* QWordPrefix */
		if (p + 9 > len)
			return false;
		*v = read64(d + p + 1);
		return true;
	}
	return false;
}

/*
 * find_cba looks for the ECAM base of the (first) PCI host bridge in the
 * DSDT: either "Name(_CBA, value)" or a method that only returns a
 * constant, "Method(_CBA) { Return(value) }" (MethodFlags byte, ReturnOp
 * 0xa4, constant). No AML interpreter is needed for either form.
 */
static bool find_cba(const uint8_t *d, uint32_t len, uint64_t *base)
{
	for (uint32_t i = 36; i + 6 < len; i++) {
		if (memcmp(d + i, "_CBA", 4) != 0)
			continue;
		uint32_t p = i + 4;
		if (d[i - 1] == 0x08 && aml_integer(d, len, p, base))
			return true;
		if (p + 2 < len && d[p + 1] == 0xa4 && aml_integer(d, len, p + 2, base))
			return true;
	}
	return false;
}

/* acpi_init fills `acpi` from the tables; rsdp_hint may be 0. Missing
 * tables are fatal: the guest cannot count vCPUs or power off without them. */
void acpi_init(uint64_t rsdp_hint)
{
	acpi.keyboard_gsi = 1;
	const uint8_t *rsdp = NULL;
	if (rsdp_hint && rsdp_hint + 36 < FOUR_GIB && memcmp((const void *)rsdp_hint, "RSD PTR ", 8) == 0)
		rsdp = (const uint8_t *)rsdp_hint;
	if (!rsdp) {
		uint64_t ebda = (uint64_t)*(volatile uint16_t *)0x40e << 4;
		if (ebda >= 0x80000 && ebda < 0xa0000)
			rsdp = scan_rsdp(ebda, ebda + 1024);
	}
	if (!rsdp)
		rsdp = scan_rsdp(0xe0000, 0x100000);
	if (!rsdp)
		fatal("no ACPI RSDP");

	/* Revision 2+ has the XSDT (64-bit entries); else the RSDT (32-bit). */
	bool xsdt = rsdp[15] >= 2 && read64(rsdp + 24) != 0;
	uint32_t len;
	const uint8_t *root = table_at(xsdt ? read64(rsdp + 24) : read32(rsdp + 16), &len);
	if (!root)
		fatal("bad ACPI root table");
	unsigned entry = xsdt ? 8 : 4;
	for (uint32_t off = 36; off + entry <= len; off += entry) {
		uint64_t a = xsdt ? read64(root + off) : read32(root + off);
		uint32_t tlen;
		const uint8_t *t = table_at(a, &tlen);
		if (!t)
			continue;
		if (memcmp(t, "APIC", 4) == 0)
			parse_madt(t, tlen);
		else if (memcmp(t, "MCFG", 4) == 0)
			parse_mcfg(t, tlen);
		else if (memcmp(t, "FACP", 4) == 0)
			parse_fadt(t, tlen);
	}
	uint64_t cba;
	if (acpi.ecam_base == 0 && dsdt && find_cba(dsdt, dsdt_len, &cba) && cba) {
		acpi.ecam_base = cba;
		acpi.ecam_bus_start = 0;
		acpi.ecam_bus_end = 0xff;
	}
	if (acpi.cpu_count == 0)
		fatal("no vCPUs in the ACPI MADT");
	if (acpi.ioapic_addr == 0)
		fatal("no IOAPIC in the ACPI MADT");
}

static void write_gas(const struct gas *g, uint16_t v)
{
	if (g->space == 0) {
		if (g->bit_width == 16)
			mmio_write16(g->address, v);
		else
			mmio_write8(g->address, (uint8_t)v);
	} else if (g->space == 1) {
		if (g->bit_width == 16)
			outw((uint16_t)g->address, v);
		else
			outb((uint16_t)g->address, (uint8_t)v);
	}
}

/*
 * acpi_poweroff enters sleep state S5 (soft off). A hardware-reduced
 * platform has a single sleep control register taking SLP_TYP in bits
 * 4:2 and SLP_EN in bit 5; a classic one has PM1a_CNT with SLP_TYP in
 * bits 12:10 and SLP_EN in bit 13. SLP_TYP comes from the DSDT's \_S5.
 */
void acpi_poweroff(void)
{
	cli();
	if (power.found) {
		if (power.hw_reduced && power.sleep_control.address)
			write_gas(&power.sleep_control, (uint16_t)((power.slp_typ_s5 & 7) << 2 | 0x20));
		else if (power.pm1a_control.address)
			write_gas(&power.pm1a_control, (uint16_t)((power.slp_typ_s5 & 7) << 10 | 1 << 13));
	}
	/* The VMM may take a moment to act on the write: wait before
	 * declaring failure. */
	if (tsc_khz) {
		uint64_t end = rdtsc() + ms_to_tsc(2000);
		while (rdtsc() < end)
			;
	}
	kprintf("gureum-testguest: error poweroff did not take effect, halting\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* machine_reboot pulses the CPU reset line through the i8042 keyboard
 * controller (command 0xfe), the oldest reset path of the PC. A machine
 * without an i8042 (status reads 0xff: QEMU microvm) is reset through the
 * FADT's reset register instead. */
void machine_reboot(void)
{
	cli();
	if (inb(0x64) != 0xff) {
		for (int i = 0; i < 1000 && (inb(0x64) & 2); i++)
			;
		outb(0x64, 0xfe);
	} else if (power.reset_reg.address) {
		write_gas(&power.reset_reg, power.reset_value);
	}
	for (;;)
		__asm__ volatile("cli; hlt");
}
