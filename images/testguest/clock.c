/*
 * clock.c - time from the TSC, and sleeping until a deadline.
 *
 * The time-stamp counter counts at a constant rate on every modern x86 and
 * KVM keeps it so for guests. Its rate comes from the hypervisor when it
 * publishes it (CPUID leaf 0x40000010, EAX = TSC kHz, present when the
 * hypervisor leaf range 0x40000000.EAX reaches it), else from timing a
 * known interval of the 8254 PIT, whose input clock is 1.193182 MHz on
 * every PC.
 *
 * To sleep until a deadline the guest uses the local APIC timer in
 * one-shot mode: it counts down from an initial value at a rate we measure
 * against the TSC, then raises VEC_TIMER, which wakes the "hlt".
 */
#include "testguest.h"
#include "x86.h"

#define LAPIC_BASE 0xfee00000ull
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define PIT_HZ 1193182ull

uint64_t tsc_khz;
static uint64_t lapic_ticks_per_ms;

static uint64_t tsc_khz_from_hypervisor(void)
{
	uint32_t r[4];
	cpuid(1, 0, r);
	if (!(r[2] & (1u << 31))) /* "hypervisor present" bit */
		return 0;
	cpuid(0x40000000, 0, r);
	if (r[0] < 0x40000010)
		return 0;
	cpuid(0x40000010, 0, r);
	return r[0];
}

/*
 * tsc_khz_from_pit counts TSC ticks while PIT channel 2 counts down 50 ms.
 * Channel 2's gate is bit 0 of port 0x61 and its output can be read back
 * in bit 5 of the same port, so no interrupt is needed: program mode 0
 * ("interrupt on terminal count": output goes high at zero) and poll.
 */
static uint64_t tsc_khz_from_pit(void)
{
	const uint64_t count = PIT_HZ / 20; /* 50 ms */
	uint8_t p61 = inb(0x61);
	outb(0x61, (uint8_t)((p61 & ~0x02) | 0x01)); /* gate on, speaker off */
	outb(0x43, 0xb0);                            /* channel 2, lo/hi byte, mode 0 */
	outb(0x42, (uint8_t)count);
	outb(0x42, (uint8_t)(count >> 8));
	uint64_t start = rdtsc();
	uint64_t polls = 0;
	while (!(inb(0x61) & 0x20)) {
		if (++polls > 50000000)
			fatal("PIT channel 2 does not count");
	}
	uint64_t ticks = rdtsc() - start;
	outb(0x61, p61);
	return ticks * PIT_HZ / count / 1000;
}

static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }

/* clock_init_this_cpu sets the APIC timer to divide-by-1, one-shot mode. */
void clock_init_this_cpu(void)
{
	lapic_write(LAPIC_TIMER_DIVIDE, 0xb);
	lapic_write(LAPIC_LVT_TIMER, VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0);
}

/* clock_init measures the TSC and the APIC timer rate, on the BSP. */
void clock_init(void)
{
	tsc_khz = tsc_khz_from_hypervisor();
	if (tsc_khz == 0)
		tsc_khz = tsc_khz_from_pit();
	if (tsc_khz == 0)
		fatal("cannot measure the TSC");

	/* Let the APIC timer run 10 ms of TSC time (masked, so no interrupt). */
	lapic_write(LAPIC_TIMER_DIVIDE, 0xb);
	lapic_write(LAPIC_LVT_TIMER, 0x10000 | VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffff);
	uint64_t end = rdtsc() + ms_to_tsc(10);
	while (rdtsc() < end)
		;
	uint32_t left = lapic_read(LAPIC_TIMER_CURRENT);
	lapic_ticks_per_ms = (0xffffffffull - left) / 10;
	if (lapic_ticks_per_ms == 0)
		lapic_ticks_per_ms = 1;
	clock_init_this_cpu();
}

uint64_t tsc_to_ms(uint64_t ticks) { return ticks / tsc_khz; }

/*
 * wait_for_interrupt_until sleeps until any interrupt arrives or the TSC
 * passes deadline_tsc (0 = no deadline). Called with interrupts off;
 * returns with interrupts off. The caller re-checks its conditions.
 */
void wait_for_interrupt_until(uint64_t deadline_tsc)
{
	if (deadline_tsc) {
		uint64_t now = rdtsc();
		if (now >= deadline_tsc)
			return;
		uint64_t ms = tsc_to_ms(deadline_tsc - now) + 1;
		uint64_t count = ms * lapic_ticks_per_ms;
		if (count > 0xffffffffull)
			count = 0xffffffffull;
		lapic_write(LAPIC_TIMER_INIT, (uint32_t)count);
	}
	sti_hlt();
	if (deadline_tsc)
		lapic_write(LAPIC_TIMER_INIT, 0); /* disarm */
	(void)take_pending(VEC_TIMER);
}
