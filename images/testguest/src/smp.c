/*
 * smp.c - starting the other vCPUs and giving them work.
 *
 * At power-on only the bootstrap processor (BSP) runs; the application
 * processors (APs) wait for the BSP to wake them with the sequence the
 * Intel MP specification defines, sent through the local APIC's interrupt
 * command register:
 *   INIT        resets the AP into "wait for SIPI"
 *   SIPI, SIPI  "start-up IPI": the AP begins in real mode at vector * 4 KiB
 * (the second SIPI is the spec's insurance against a lost first one). The
 * code at that address is trampoline.S.
 *
 * Once in C, an AP sleeps in "sti; hlt". The BSP hands it a function by
 * storing it in the AP's slot and sending the VEC_WAKE IPI; when done the
 * AP clears the slot and sends VEC_DONE back to the BSP.
 */
#include "testguest.h"
#include "x86.h"

#define TRAMPOLINE_ADDR 0x8000
#define AP_STACK_SIZE 8192

#define ICR_INIT 0x4500   /* delivery mode INIT, level assert */
#define ICR_STARTUP 0x4600 /* delivery mode start-up; low byte = page number */
#define ICR_FIXED 0x4000  /* delivery mode fixed; low byte = vector */

extern char trampoline_start[], trampoline_end[], trampoline_cr3[], trampoline_stack[];
extern char pml4[];

struct cpu_slot {
	volatile ap_work_fn fn; /* non-NULL while the AP has work */
	volatile uint64_t arg;
	volatile bool online;
};

static struct cpu_slot slots[MAX_CPUS];
static uint8_t ap_stacks[MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));
uint32_t cpus_online = 1;
uint32_t bsp_apic_id;

int cpu_index_of_apic(uint32_t apic_id)
{
	for (uint32_t i = 0; i < acpi.cpu_count; i++)
		if (acpi.apic_ids[i] == apic_id)
			return (int)i;
	return -1;
}

static void spin_ms(uint64_t ms)
{
	uint64_t end = rdtsc() + ms_to_tsc(ms);
	while (rdtsc() < end)
		;
}

/* burn_tsc keeps this vCPU busy for `ticks` of TSC time: a register-only
 * countdown loop (no memory traffic, no exits), checking the TSC between
 * rounds. */
void burn_tsc(uint64_t ticks)
{
	uint64_t end = rdtsc() + ticks;
	while (rdtsc() < end)
		__asm__ volatile("mov $100000, %%ecx\n1: dec %%ecx\njnz 1b" : : : "ecx", "cc");
}

/* smp_start_aps wakes every vCPU the MADT lists, one at a time. */
void smp_start_aps(void)
{
	bsp_apic_id = lapic_id();
	size_t n = (size_t)(trampoline_end - trampoline_start);
	memcpy((void *)TRAMPOLINE_ADDR, trampoline_start, n);
	uint64_t *cr3 = (uint64_t *)(TRAMPOLINE_ADDR + (trampoline_cr3 - trampoline_start));
	uint64_t *stack = (uint64_t *)(TRAMPOLINE_ADDR + (trampoline_stack - trampoline_start));
	*cr3 = (uint64_t)pml4;

	for (uint32_t i = 0; i < acpi.cpu_count; i++) {
		uint32_t id = acpi.apic_ids[i];
		if (id == bsp_apic_id) {
			slots[i].online = true;
			continue;
		}
		*stack = (uint64_t)&ap_stacks[i][AP_STACK_SIZE];
		barrier();
		lapic_send_ipi(id, ICR_INIT);
		spin_ms(10);
		for (int attempt = 0; attempt < 2 && !slots[i].online; attempt++) {
			lapic_send_ipi(id, ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
			/* An AP runs its first instructions in the emulator slowly:
			 * allow it a generous second before the retry. */
			uint64_t end = rdtsc() + ms_to_tsc(1000);
			while (!slots[i].online && rdtsc() < end)
				;
		}
		if (!slots[i].online)
			fatal("vCPU with APIC id %u did not start", id);
		cpus_online++;
	}
}

/* ap_main is where trampoline.S lands each AP, on its own stack. */
void ap_main(void)
{
	idt_load();
	lapic_init_this_cpu();
	clock_init_this_cpu();
	int me = cpu_index_of_apic(lapic_id());
	if (me < 0)
		for (;;)
			__asm__ volatile("cli; hlt");
	struct cpu_slot *s = &slots[me];
	barrier();
	s->online = true;
	for (;;) {
		cli();
		ap_work_fn fn = s->fn;
		if (!fn) {
			sti_hlt();
			continue;
		}
		fn(s->arg);
		barrier();
		s->fn = 0;
		lapic_send_ipi(bsp_apic_id, ICR_FIXED | VEC_DONE);
	}
}

bool ap_is_busy(int cpu) { return slots[cpu].fn != 0; }

/* ap_give_work starts fn(arg) on vCPU index cpu; false if it is busy or
 * not an online AP. Called on the BSP only. */
bool ap_give_work(int cpu, ap_work_fn fn, uint64_t arg)
{
	if (cpu < 0 || cpu >= (int)acpi.cpu_count || !slots[cpu].online || acpi.apic_ids[cpu] == bsp_apic_id ||
	    slots[cpu].fn)
		return false;
	slots[cpu].arg = arg;
	barrier();
	slots[cpu].fn = fn;
	full_fence();
	lapic_send_ipi(acpi.apic_ids[cpu], ICR_FIXED | VEC_WAKE);
	return true;
}
