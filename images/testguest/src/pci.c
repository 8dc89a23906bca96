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

/* bar_size measures a memory BAR by writing all ones and reading back
 * which address bits stick: the device hardwires the low bits of its
 * size's alignment to zero. Decoding is off meanwhile so the transient
 * address does not claim anything. Returns 0 for I/O or absent BARs.
 * *is64 tells whether the BAR takes the next register as its high half. */
static uint64_t bar_size(const struct pci_device *d, int bar, bool *is64)
{
	uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
	uint32_t orig = pci_read32(d, reg);
	*is64 = false;
	if (orig & 1)
		return 0; /* I/O space BAR: the guest uses none */
	*is64 = ((orig >> 1) & 3) == 2;
	uint16_t cmd = pci_read16(d, PCI_COMMAND);
	pci_write16(d, PCI_COMMAND, cmd & (uint16_t)~PCI_COMMAND_MEMORY);
	pci_write32(d, reg, 0xffffffff);
	uint64_t mask = pci_read32(d, reg) & ~0xfull;
	pci_write32(d, reg, orig);
	if (*is64) {
		uint32_t orig_hi = pci_read32(d, (uint16_t)(reg + 4));
		pci_write32(d, (uint16_t)(reg + 4), 0xffffffff);
		mask |= (uint64_t)pci_read32(d, (uint16_t)(reg + 4)) << 32;
		pci_write32(d, (uint16_t)(reg + 4), orig_hi);
	} else {
		mask |= 0xffffffff00000000ull;
	}
	pci_write16(d, PCI_COMMAND, cmd);
	if ((uint32_t)mask == 0)
		return 0;
	return ~mask + 1;
}

static uint64_t bar_base(const struct pci_device *d, int bar, bool is64)
{
	uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
	uint64_t a = pci_read32(d, reg) & ~0xfull;
	if (is64)
		a |= (uint64_t)pci_read32(d, (uint16_t)(reg + 4)) << 32;
	return a;
}

typedef void (*bar_visitor)(const struct pci_device *d, int bar, bool is64, uint64_t size);

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

static void for_each_memory_bar(const struct pci_device *d, bar_visitor visit)
{
	if ((pci_read8(d, PCI_HEADER_TYPE) & 0x7f) != 0)
		return; /* bridges have a different layout */
	for (int bar = 0; bar < 6; bar++) {
		bool is64;
		uint64_t size = bar_size(d, bar, &is64);
		if (size)
			visit(d, bar, is64, size);
		if (is64)
			bar++;
	}
}

/* First pass: move the allocation cursor past every BAR already placed
 * in the window, so that new assignments cannot overlap them. */
static void note_assigned(const struct pci_device *d, int bar, bool is64, uint64_t size)
{
	uint64_t base = bar_base(d, bar, is64);
	if (base >= MMIO_WINDOW_START && base < MMIO_WINDOW_END && base + size > next_bar_address)
		next_bar_address = base + size;
}

/* Second pass: give every unassigned BAR a naturally aligned place. */
static void assign_unassigned(const struct pci_device *d, int bar, bool is64, uint64_t size)
{
	if (bar_base(d, bar, is64) != 0)
		return;
	uint64_t a = (next_bar_address + size - 1) & ~(size - 1);
	if (a + size > MMIO_WINDOW_END)
		fatal("PCI window full assigning %02x:%02x.%u BAR %d", d->bus, d->dev, d->fn, bar);
	uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
	pci_write32(d, reg, (uint32_t)a);
	if (is64)
		pci_write32(d, (uint16_t)(reg + 4), 0);
	next_bar_address = a + size;
}

static void visit_note(const struct pci_device *d, void *ctx)
{
	(void)ctx;
	for_each_memory_bar(d, note_assigned);
}

static void visit_assign(const struct pci_device *d, void *ctx)
{
	(void)ctx;
	for_each_memory_bar(d, assign_unassigned);
}

static void scan_bars_once(void)
{
	if (bars_scanned)
		return;
	bars_scanned = true;
	for_each_function(visit_note, NULL);
	for_each_function(visit_assign, NULL);
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
