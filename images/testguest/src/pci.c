/*
 * pci.c - PCI configuration space, device discovery and BARs.
 *
 * Every PCI function has 256 bytes (PCIe: 4 KiB) of configuration space:
 * IDs, a command register, six Base Address Registers (BARs) saying where
 * its memory windows live, and a linked list of capabilities. The guest
 * reaches it one of two standard ways:
 *   - ECAM (PCI Express "enhanced configuration access"): config space is
 *     memory-mapped at base + (bus << 20 | dev << 15 | fn << 12 | offset);
 *     the base comes from the ACPI MCFG table. QEMU microvm uses this.
 *   - mechanism #1: write (1 << 31 | bus << 16 | dev << 11 | fn << 8 |
 *     offset) to port 0xcf8, then access the data at port 0xcfc. This is
 *     what gureum-vmm offers (it has no MCFG table).
 *
 * BARs: gureum-vmm assigns them before boot; on QEMU microvm no firmware
 * does, so the guest assigns unassigned memory BARs itself from the 32-bit
 * window 0xc0000000..0xdfffffff. That is the window QEMU's microvm gives
 * its PCIe host bridge (PCIE_MMIO_BASE / PCIE_MMIO_SIZE in
 * hw/i386/microvm.h), and also gureum's layout.PCIMMIOStart/Size; the
 * guest assumes it rather than reading the host bridge's _CRS from the DSDT.
 * Only bus 0 is scanned: both machines put their devices there.
 */
#include "testguest.h"
#include "x86.h"

#define MMIO_WINDOW_START 0xc0000000ull
#define MMIO_WINDOW_END 0xe0000000ull

#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_OFF 0x400
#define PCI_STATUS 0x06
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAP_PTR 0x34

static uint64_t next_bar_address = MMIO_WINDOW_START;
static bool bars_scanned;

static uint64_t ecam_address(const struct pci_device *d, uint16_t off)
{
	return acpi.ecam_base + ((uint64_t)(d->bus - acpi.ecam_bus_start) << 20) + ((uint64_t)d->dev << 15) +
	       ((uint64_t)d->fn << 12) + off;
}

static void select_cf8(const struct pci_device *d, uint16_t off)
{
	outl(0xcf8, 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 | (uint32_t)d->fn << 8 |
			    (off & 0xfc));
}

uint32_t pci_read32(const struct pci_device *d, uint16_t off)
{
	if (acpi.ecam_base)
		return mmio_read32(ecam_address(d, off));
	select_cf8(d, off);
	return inl(0xcfc);
}

uint16_t pci_read16(const struct pci_device *d, uint16_t off)
{
	if (acpi.ecam_base)
		return mmio_read16(ecam_address(d, off));
	select_cf8(d, off);
	return inw((uint16_t)(0xcfc + (off & 2)));
}

uint8_t pci_read8(const struct pci_device *d, uint16_t off)
{
	if (acpi.ecam_base)
		return mmio_read8(ecam_address(d, off));
	select_cf8(d, off);
	return inb((uint16_t)(0xcfc + (off & 3)));
}

void pci_write32(const struct pci_device *d, uint16_t off, uint32_t v)
{
	if (acpi.ecam_base) {
		mmio_write32(ecam_address(d, off), v);
		return;
	}
	select_cf8(d, off);
	outl(0xcfc, v);
}

void pci_write16(const struct pci_device *d, uint16_t off, uint16_t v)
{
	if (acpi.ecam_base) {
		mmio_write16(ecam_address(d, off), v);
		return;
	}
	select_cf8(d, off);
	outw((uint16_t)(0xcfc + (off & 2)), v);
}

/* One memory BAR found by the scan: where it is (0: unassigned) and how
 * big it is. */
struct bar_info {
	struct pci_device dev;
	uint8_t bar;
	bool is64;
	uint64_t base;
	uint64_t size;
};

#define MAX_BARS 96
static struct bar_info bars[MAX_BARS];
static int nbars;

/* size_bars measures every memory BAR of a (type 0) function by writing
 * all ones and reading back which address bits stick: the device
 * hardwires the low bits of its size's alignment to zero. Memory decoding
 * is off meanwhile (turned off once for the whole function if it was on),
 * so the transient addresses claim nothing. I/O BARs (the guest uses
 * none) and absent ones are skipped.
 *
 * Every configuration access is a VM exit, and without hardware
 * virtualization each costs tens of microseconds, so the sequence is kept
 * short: per BAR register one read, one write of ones, one read back and
 * one restore. */
static void size_bars(const struct pci_device *d)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);
	if (cmd & PCI_COMMAND_MEMORY)
		pci_write16(d, PCI_COMMAND, cmd & (uint16_t)~PCI_COMMAND_MEMORY);
	for (int bar = 0; bar < 6; bar++) {
		uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
		uint32_t orig = pci_read32(d, reg);
		if (orig & 1)
			continue; /* I/O space BAR */
		bool is64 = ((orig >> 1) & 3) == 2 && bar < 5;
		pci_write32(d, reg, 0xffffffff);
		uint64_t mask = pci_read32(d, reg) & ~0xfull;
		pci_write32(d, reg, orig);
		uint64_t base = orig & ~0xfull;
		if (is64) {
			uint16_t hi = (uint16_t)(reg + 4);
			uint32_t orig_hi = pci_read32(d, hi);
			pci_write32(d, hi, 0xffffffff);
			mask |= (uint64_t)pci_read32(d, hi) << 32;
			pci_write32(d, hi, orig_hi);
			base |= (uint64_t)orig_hi << 32;
		} else {
			mask |= 0xffffffff00000000ull;
		}
		if ((uint32_t)mask != 0 && nbars < MAX_BARS)
			bars[nbars++] = (struct bar_info){*d, (uint8_t)bar, is64, base, ~mask + 1};
		if (is64)
			bar++;
	}
	if (cmd & PCI_COMMAND_MEMORY)
		pci_write16(d, PCI_COMMAND, cmd);
}

static uint64_t bar_base(const struct pci_device *d, int bar, bool is64)
{
	uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
	uint64_t a = pci_read32(d, reg) & ~0xfull;
	if (is64)
		a |= (uint64_t)pci_read32(d, (uint16_t)(reg + 4)) << 32;
	return a;
}

static void for_each_function(void (*fn)(const struct pci_device *d, void *ctx), void *ctx)
{
	uint8_t bus = acpi.ecam_base ? acpi.ecam_bus_start : 0;
	for (uint8_t dev = 0; dev < 32; dev++) {
		for (uint8_t f = 0; f < 8; f++) {
			struct pci_device d = {bus, dev, f, 0, 0, 0};
			uint32_t id = pci_read32(&d, 0);
			if ((id & 0xffff) == 0xffff || id == 0) {
				if (f == 0)
					break;
				continue;
			}
			d.vendor = (uint16_t)id;
			d.device = (uint16_t)(id >> 16);
			d.subsystem = pci_read16(&d, PCI_SUBSYSTEM_ID);
			fn(&d, ctx);
			if (f == 0 && !(pci_read8(&d, PCI_HEADER_TYPE) & 0x80))
				break; /* not multi-function */
		}
	}
}

static void visit_size(const struct pci_device *d, void *ctx)
{
	(void)ctx;
	if ((pci_read8(d, PCI_HEADER_TYPE) & 0x7f) == 0) /* bridges have a different layout */
		size_bars(d);
}

/* scan_bars_once sizes every memory BAR on the bus in one pass, moves the
 * allocation cursor past those already placed in the window (so that new
 * assignments cannot overlap them), then gives every unassigned one a
 * naturally aligned place. */
static void scan_bars_once(void)
{
	if (bars_scanned)
		return;
	bars_scanned = true;
	for_each_function(visit_size, NULL);
	for (int i = 0; i < nbars; i++) {
		uint64_t base = bars[i].base, size = bars[i].size;
		if (base >= MMIO_WINDOW_START && base < MMIO_WINDOW_END && base + size > next_bar_address)
			next_bar_address = base + size;
	}
	for (int i = 0; i < nbars; i++) {
		struct bar_info *b = &bars[i];
		if (b->base != 0)
			continue;
		uint64_t a = (next_bar_address + b->size - 1) & ~(b->size - 1);
		if (a + b->size > MMIO_WINDOW_END)
			fatal("PCI window full assigning %02x:%02x.%u BAR %d", b->dev.bus, b->dev.dev, b->dev.fn, b->bar);
		uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * b->bar);
		pci_write32(&b->dev, reg, (uint32_t)a);
		if (b->is64)
			pci_write32(&b->dev, (uint16_t)(reg + 4), 0);
		b->base = a;
		next_bar_address = a + b->size;
	}
}

struct find_ctx {
	uint16_t type;
	uint32_t skip; /* matching functions still to pass over */
	bool found;
	struct pci_device dev;
};

/* A virtio 1.x device is vendor 0x1af4, device 0x1040 + virtio type.
 * Transitional devices (0x1000..0x103f, type in the subsystem ID) carry
 * the same modern interface beside the legacy one, so they are accepted
 * and driven through the modern interface only. */
static void visit_find(const struct pci_device *d, void *ctx)
{
	struct find_ctx *c = ctx;
	if (c->found || d->vendor != 0x1af4)
		return;
	bool modern = d->device == 0x1040 + c->type;
	bool transitional = d->device >= 0x1000 && d->device < 0x1040 && d->subsystem == c->type;
	if (!modern && !transitional)
		return;
	if (c->skip) {
		c->skip--;
		return;
	}
	c->found = true;
	c->dev = *d;
}

/* pci_find returns the first virtio device of the given type on bus 0. */
bool pci_find(uint16_t virtio_type, struct pci_device *out) { return pci_find_nth(virtio_type, 0, out); }

/* pci_find_nth returns the n-th (from 0) virtio device of the given type,
 * in bus order, which is the order the VMM added them in. */
bool pci_find_nth(uint16_t virtio_type, uint32_t n, struct pci_device *out)
{
	if (acpi.ecam_base && acpi.ecam_base + 0x100000 > 0x100000000ull)
		fatal("PCI ECAM above 4 GiB is not mapped");
	scan_bars_once();
	struct find_ctx c = {virtio_type, n, false, {0}};
	for_each_function(visit_find, &c);
	if (c.found)
		*out = c.dev;
	return c.found;
}

uint64_t pci_bar_address(const struct pci_device *d, int bar)
{
	if (bar < 0 || bar > 5)
		return 0;
	uint32_t low = pci_read32(d, (uint16_t)(PCI_BAR0 + 4 * bar));
	if (low & 1)
		return 0;
	bool is64 = ((low >> 1) & 3) == 2 && bar < 5;
	return bar_base(d, bar, is64);
}

/* pci_enable turns on memory decoding and bus mastering (the device may
 * then read and write guest RAM: rings and buffers) and turns off the
 * legacy INTx wire, since MSI-X is used. */
void pci_enable(const struct pci_device *d)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);
	pci_write16(d, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_OFF);
}

/* pci_find_capability walks the capability list from `start` (0 = the
 * head) and returns the offset of the next capability with the given ID,
 * or 0. The walk is bounded: a looping list from a broken device ends. */
uint8_t pci_find_capability(const struct pci_device *d, uint8_t id, uint8_t start)
{
	if (!(pci_read16(d, PCI_STATUS) & 0x10))
		return 0;
	uint8_t off = start ? pci_read8(d, (uint16_t)(start + 1)) : pci_read8(d, PCI_CAP_PTR);
	for (int n = 0; n < 48 && off >= 0x40; n++) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
		off = pci_read8(d, (uint16_t)(off + 1));
	}
	return 0;
}
