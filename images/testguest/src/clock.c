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

/* pit0_count latches PIT channel 0's counter and reads it (low byte,
 * then high byte). Latching freezes the value for the read only; the
 * counter keeps running. */
static uint16_t pit0_count(void)
{
	outb(0x43, 0x00);
	uint8_t lo = inb(0x40);
	uint8_t hi = inb(0x40);
	return (uint16_t)(lo | hi << 8);
}

/*
 * tsc_khz_from_pit counts TSC ticks while PIT channel 0 counts 50 ms.
 * Channel 0 runs as a rate generator (mode 2) from 65536 down, wrapping
 * every 55 ms; the guest reads it repeatedly and adds up how far it moved
 * (16-bit differences handle the wrap). No interrupt is involved: IRQ 0
 * stays masked. Channel 0 is used rather than channel 2 because channel
 * 2's gate and output live in port 0x61, which not every VMM models
 * (QEMU's microvm does not).
 */
static uint64_t tsc_khz_from_pit(void)
{
	const uint64_t want = PIT_HZ / 20; /* 50 ms of PIT input clocks */
	outb(0x43, 0x34);                  /* channel 0, lo/hi byte, mode 2, binary */
	outb(0x40, 0);
	outb(0x40, 0); /* reload value 0 means 65536 */
	uint16_t prev = pit0_count();
	uint64_t start = rdtsc(), counted = 0, polls = 0;
	while (counted < want) {
		uint16_t now = pit0_count();
		counted += (uint16_t)(prev - now);
		prev = now;
		if (++polls > 2000000)
			fatal("the PIT does not count (no i8254?)");
	}
	uint64_t ticks = rdtsc() - start;
	outb(0x43, 0x30); /* mode 0 without a count: channel 0 stops */
	return ticks * PIT_HZ / counted / 1000;
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
