/*
 * x86.h - the few privileged instructions the test guest needs, as inline
 * functions: port I/O, MMIO, MSRs, CPUID, the TSC and interrupt control.
 *
 * Port I/O (in/out) and MMIO to device windows are what make a virtual
 * machine "exit" to its VMM: the CPU stops running guest code and the VMM
 * emulates the device access. Everything else runs inside the guest.
 */
#ifndef TESTGUEST_X86_H
#define TESTGUEST_X86_H

#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/*
 * MMIO accessors. The volatile pointer forces exactly one access of the
 * given width, which is what device registers require: a virtio register
 * read as two halves, or merged with its neighbour, means something else.
 */
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
/* 64-bit registers are written as two 32-bit halves, low first, which the
 * virtio spec allows and which every device model handles. */
static inline void mmio_write64(uint64_t a, uint64_t v)
{
	mmio_write32(a, (uint32_t)v);
	mmio_write32(a + 4, (uint32_t)(v >> 32));
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }

/*
 * sti_hlt enables interrupts and halts in one step. STI only takes effect
 * after the next instruction, so no interrupt can slip in between the two:
 * a caller that checked "nothing to do" with interrupts off cannot miss
 * the wake-up interrupt and sleep forever. It returns after one interrupt
 * has been handled, with interrupts off again.
 */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }

/* Compiler barrier: keeps the compiler from reordering memory accesses
 * across it. x86 itself keeps stores in order, so for sharing rings with a
 * device (and other vCPUs) this is all the ordering plain stores need. */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
/* Full fence, for the few places where a load must not pass an earlier
 * store. A locked instruction is used rather than MFENCE because every
 * instruction may have to pass through KVM's instruction emulator, which
 * knows locked read-modify-writes well. */
static inline void full_fence(void) { __asm__ volatile("lock; orl $0, (%%rsp)" ::: "memory", "cc"); }

#endif
