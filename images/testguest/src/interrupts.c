/*
 * interrupts.c - the IDT, the local APIC, the IOAPIC and the old 8259 PIC.
 *
 * How an interrupt reaches the guest here:
 *   - virtio devices use MSI-X: the device writes a message (data = vector)
 *     to address 0xfee00000 | (APIC id << 12); KVM turns that write into
 *     an interrupt on that vCPU's local APIC. No interrupt controller pin
 *     is involved.
 *   - the i8042 keyboard raises legacy IRQ 1, a pin of the IOAPIC, whose
 *     redirection entry names the vector and the destination APIC.
 *   - vCPUs interrupt each other with IPIs written to their local APIC's
 *     interrupt command register (ICR).
 * The local APIC then makes the CPU jump through the IDT entry for the
 * vector; the handler must write the APIC's EOI register when done so that
 * the APIC delivers the next interrupt of equal or lower priority.
 *
 * Handlers here do as little as possible: they record that the vector
 * fired in a pending mask and return. The BSP's main loop, which sleeps in
 * "sti; hlt", wakes up, takes the pending bits and does the work.
 */
#include "testguest.h"
#include "x86.h"

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_ERROR 0x370
#define LVT_MASKED 0x10000

struct idt_entry {
	uint16_t offset_low, selector;
	uint8_t ist, type_attr;
	uint16_t offset_mid;
	uint32_t offset_high, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern char interrupt_stubs[];

/* One bit per vector 0x20..0x5f, set by handlers on any vCPU. */
static volatile uint64_t pending;

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

/* idt_init fills the IDT once: every vector goes to its stub in vectors.S
 * through an interrupt gate (0x8e: present, ring 0, interrupts disabled on
 * entry). */
void idt_init(void)
{
	for (int v = 0; v < 256; v++) {
		uint64_t a = (uint64_t)interrupt_stubs + 16 * (uint64_t)v;
		idt[v].offset_low = (uint16_t)a;
		idt[v].selector = 0x08;
		idt[v].ist = 0;
		idt[v].type_attr = 0x8e;
		idt[v].offset_mid = (uint16_t)(a >> 16);
		idt[v].offset_high = (uint32_t)(a >> 32);
		idt[v].zero = 0;
	}
}

/* idt_load makes this vCPU use the IDT; every vCPU calls it. */
void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = {sizeof idt - 1, (uint64_t)idt};
	__asm__ volatile("lidt %0" : : "m"(idtr));
}

/* lapic_init_this_cpu software-enables this vCPU's local APIC: spurious
 * vector register bit 8, priority 0 (accept everything), and LINT0 (the
 * 8259's wire into the BSP) masked because the PIC is not used. */
void lapic_init_this_cpu(void)
{
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_LVT_ERROR, LVT_MASKED);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

/* lapic_send_ipi writes the destination first (ICR high), then the
 * command (ICR low), which sends it; then waits until the APIC reports the
 * IPI delivered (bit 12 clear). */
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, icr_low);
	for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LOW) & (1u << 12)); i++)
		;
}

/* ioapic_route points IOAPIC input gsi at vector on one APIC: fixed
 * delivery, physical destination, edge-triggered. */
void ioapic_route(uint32_t gsi, uint8_t vector, uint32_t dest_apic, bool active_low)
{
	uint32_t pin = gsi - acpi.ioapic_gsi_base;
	uint32_t low = vector | (active_low ? 1u << 13 : 0);
	mmio_write32(acpi.ioapic_addr, 0x10 + 2 * pin + 1);
	mmio_write32(acpi.ioapic_addr + 0x10, dest_apic << 24);
	mmio_write32(acpi.ioapic_addr, 0x10 + 2 * pin);
	mmio_write32(acpi.ioapic_addr + 0x10, low);
}

/* pic_mask_all silences the 8259 PICs; the IOAPIC and MSI-X carry every
 * interrupt instead. */
void pic_mask_all(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

bool take_pending(uint8_t vector)
{
	if (vector < 0x20 || vector >= 0x60)
		return false;
	bool was;
	/* lock btr: atomically test and clear one bit. */
	__asm__ volatile("lock btrq %2, %0; setc %1"
			 : "+m"(pending), "=q"(was)
			 : "r"((uint64_t)(vector - 0x20))
			 : "memory", "cc");
	return was;
}

static void set_pending(uint8_t vector)
{
	__asm__ volatile("lock btsq %1, %0" : "+m"(pending) : "r"((uint64_t)(vector - 0x20)) : "memory", "cc");
}

static const char *const exception_names[32] = {
	"divide error", "debug", "NMI", "breakpoint", "overflow", "bound", "invalid opcode",
	"no FPU", "double fault", "coprocessor", "invalid TSS", "segment not present",
	"stack fault", "general protection", "page fault", "reserved", "x87 error",
	"alignment check", "machine check", "SIMD error", "virtualization", "control protection",
};

/*
 * interrupt_dispatch is called by vectors.S with the saved frame:
 * frame[0..14] = r15..rax, [15] = vector, [16] = error code, [17] = RIP,
 * [18] = CS, [19] = RFLAGS, [20] = RSP, [21] = SS.
 */
void interrupt_dispatch(uint64_t *frame)
{
	uint64_t vector = frame[15];
	if (vector < 32) {
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		const char *name = exception_names[vector] ? exception_names[vector] : "exception";
		fatal("exception %lu (%s) at rip 0x%lx error 0x%lx cr2 0x%lx apic %u", vector, name, frame[17],
		      frame[16], cr2, lapic_id());
	}
	if (vector == VEC_SPURIOUS)
		return; /* spurious interrupts take no EOI */
	if (vector == VEC_KEYBOARD)
		keyboard_interrupt();
	else if (vector >= 0x20 && vector < 0x60)
		set_pending((uint8_t)vector);
	lapic_eoi();
}
