/*
 * main.c - start-up, the command line, and the modes: self tests,
 * serving, and idling (after a burn, when burn= is given alone).
 *
 * Start-up order matters: console first (to report errors), then the IDT
 * (so a fault prints instead of resetting the VM), ACPI (vCPU count,
 * IOAPIC, ECAM, power-off), the local APIC and the clock, the APs, PCI,
 * the keyboard, the virtio devices the mode needs; then
 * "gureum-testguest: ready".
 */
#include "testguest.h"
#include "x86.h"

#define HVM_START_MAGIC 0x336ec578
#define FALLBACK_RAM_TOP (32ull << 20)
#define RAM_TOP_LIMIT 0xc0000000ull

struct config config;
static char cmdline[1024];

/* Reads the fields of struct hvm_start_info we use: the command line,
 * the RSDP address and the memory map (version 1 and later). */
static uint64_t read_start_info(uint64_t pa, uint64_t *rsdp)
{
	const uint8_t *si = (const uint8_t *)pa;
	uint64_t ram_top = FALLBACK_RAM_TOP;
	*rsdp = 0;
	if (pa == 0 || *(const uint32_t *)si != HVM_START_MAGIC)
		fatal("no PVH start info (magic mismatch)");
	uint32_t version = *(const uint32_t *)(si + 4);
	uint64_t cmd = *(const uint64_t *)(si + 24);
	*rsdp = *(const uint64_t *)(si + 32);
	if (cmd && cmd < RAM_TOP_LIMIT) {
		const char *c = (const char *)cmd;
		size_t n = 0;
		while (n + 1 < sizeof cmdline && c[n])
			n++;
		memcpy(cmdline, c, n);
		cmdline[n] = 0;
	}
	if (version >= 1) {
		uint64_t map = *(const uint64_t *)(si + 40);
		uint32_t entries = *(const uint32_t *)(si + 48);
		for (uint32_t i = 0; map && i < entries && i < 128; i++) {
			const uint8_t *e = (const uint8_t *)(map + 24ull * i);
			uint64_t addr = *(const uint64_t *)e, size = *(const uint64_t *)(e + 8);
			uint32_t type = *(const uint32_t *)(e + 16);
			if (type == 1 && addr <= 0x100000 && addr + size > 0x100000) {
				ram_top = addr + size;
				if (ram_top > RAM_TOP_LIMIT)
					ram_top = RAM_TOP_LIMIT;
			}
		}
	}
	return ram_top;
}

/* parse_burn reads "CPULIST:SECONDS", CPULIST like "1", "0,1" or "0-3". */
static bool parse_burn(const char *s)
{
	uint32_t mask = 0;
	for (;;) {
		uint64_t a, b;
		if (!parse_u64(s, &s, &a))
			return false;
		b = a;
		if (*s == '-' && !parse_u64(s + 1, &s, &b))
			return false;
		for (uint64_t i = a; i <= b && i < MAX_CPUS; i++)
			mask |= 1u << i;
		if (*s == ',') {
			s++;
			continue;
		}
		break;
	}
	if (*s != ':' || !parse_u64(s + 1, NULL, &config.burn_s))
		return false;
	config.burn_cpus = mask;
	config.burn_given = true;
	return true;
}

static void parse_word(const char *w)
{
	uint64_t v;
	if (str_starts(w, "selftest") && (w[8] == 0 || w[8] == ' '))
		config.selftest = true;
	else if (str_starts(w, "serve") && (w[5] == 0 || w[5] == ' '))
		config.serve = true;
	else if (str_starts(w, "fault") && (w[5] == 0 || w[5] == ' '))
		config.fault = true;
	else if (str_starts(w, "hostile") && (w[7] == 0 || w[7] == ' '))
		config.hostile = true; /* hostile.c */
	else if (str_starts(w, "hostile.hold=") && parse_u64(w + 13, NULL, &v))
		config.hostile_hold_s = v;
	else if (str_starts(w, "ip=")) {
		uint32_t ip;
		const char *end;
		if (parse_ipv4(w + 3, &end, &ip)) {
			config.ip = ip;
			if (*end == '/' && parse_u64(end + 1, NULL, &v) && v <= 32)
				config.netmask = v ? ~0u << (32 - v) : 0;
		}
	} else if (str_starts(w, "gw="))
		parse_ipv4(w + 3, NULL, &config.gateway);
	else if (str_starts(w, "name=")) {
		size_t n = 0;
		for (w += 5; w[n] && w[n] != ' ' && n + 1 < sizeof config.name; n++)
			config.name[n] = w[n];
		config.name[n] = 0;
	} else if (str_starts(w, "blk.mib=") && parse_u64(w + 8, NULL, &v) && v > 0)
		config.blk_mib = v;
	else if (str_starts(w, "net.wait=") && parse_u64(w + 9, NULL, &v))
		config.net_wait_s = v;
	else if (str_starts(w, "burn="))
		parse_burn(w + 5);
	else if (str_starts(w, "blk.disk=") && parse_u64(w + 9, NULL, &v))
		config.blk_disk = v;
	else if (str_starts(w, "blkiops=")) {
		/* DISK:SECONDS[:r|:w|:rw] */
		const char *end;
		uint64_t disk;
		if (parse_u64(w + 8, &end, &disk) && *end == ':' && parse_u64(end + 1, &end, &v)) {
			config.blk_disk = disk;
			config.blkiops_s = v;
			config.blkiops_modes = 1; /* reads unless ":w" or ":rw" follows */
			if (str_starts(end, ":w"))
				config.blkiops_modes = 2;
			else if (str_starts(end, ":rw"))
				config.blkiops_modes = 3;
		}
	} else if (str_starts(w, "peer=")) {
		uint32_t ip;
		const char *end;
		if (parse_ipv4(w + 5, &end, &ip) && (*end == 0 || *end == ' ') && config.peer_count < MAX_PEERS)
			config.peers[config.peer_count++] = ip;
	} else if (str_starts(w, "peer.wait=") && parse_u64(w + 10, NULL, &v) && v <= 86400)
		config.peer_wait_s = v;
	else if (str_starts(w, "blkcmd") && (w[6] == 0 || w[6] == ' '))
		config.blkcmd = true; /* blkcmd.c */
	/* anything else is ignored */
}

static void parse_cmdline(void)
{
	config.ip = 10u << 24 | 2;      /* 10.0.0.2 */
	config.netmask = 0xffffff00u;   /* /24 */
	config.gateway = 10u << 24 | 1; /* 10.0.0.1 */
	config.blk_mib = 4;
	config.net_wait_s = 30;
	config.peer_wait_s = 30;
	char *p = cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		char *word = p;
		while (*p && *p != ' ')
			p++;
		char saved = *p;
		*p = 0;
		parse_word(word);
		*p = saved;
	}
}

static void burn_work(uint64_t ticks) { burn_tsc(ticks); }

/* burn_run spins the listed vCPUs for burn_s seconds of TSC time while the
 * others sleep in hlt, and reports on a line starting with `what`. */
static enum result burn_run(const char *what)
{
	int bsp = cpu_index_of_apic(bsp_apic_id);
	char cpus[64];
	size_t n = 0;
	cpus[0] = 0;
	for (int i = 0; i < MAX_CPUS; i++) {
		if (!(config.burn_cpus & (1u << i)))
			continue;
		if (i >= (int)acpi.cpu_count) {
			kprintf("%s: fail vCPU %d does not exist (%u vCPUs)\n", what, i, acpi.cpu_count);
			return RESULT_FAIL;
		}
		n += (size_t)ksnprintf(cpus + n, sizeof cpus - n, n ? ",%d" : "%d", i);
	}
	uint64_t ticks = ms_to_tsc(config.burn_s * 1000);
	uint64_t start = rdtsc();
	for (int i = 0; i < (int)acpi.cpu_count; i++)
		if ((config.burn_cpus & (1u << i)) && i != bsp)
			ap_give_work(i, burn_work, ticks);
	if (bsp >= 0 && (config.burn_cpus & (1u << bsp)))
		burn_tsc(ticks);
	for (;;) {
		cli();
		bool busy = false;
		for (int i = 0; i < (int)acpi.cpu_count; i++)
			busy |= ap_is_busy(i);
		if (!busy)
			break;
		wait_for_interrupt_until(rdtsc() + ms_to_tsc(1000));
	}
	(void)take_pending(VEC_DONE);
	kprintf("%s: ok cpus=%s seconds=%lu elapsed_ms=%lu\n", what, cpus, config.burn_s,
		tsc_to_ms(rdtsc() - start));
	return RESULT_OK;
}

static enum result burn_selftest(void)
{
	if (!config.burn_given) {
		kprintf("selftest burn: skip no burn= given\n");
		return RESULT_SKIP;
	}
	return burn_run("selftest burn");
}

static void run_selftests(void)
{
	int counts[3] = {0, 0, 0};
	counts[blk_selftest()]++;
	counts[net_selftest()]++;
	counts[burn_selftest()]++;
	if (config.blkiops_s) /* only when asked: older hosts count the lines */
		counts[blkiops_selftest()]++;
	kprintf("selftest done: %d ok, %d fail, %d skip\n", counts[RESULT_OK], counts[RESULT_FAIL], counts[RESULT_SKIP]);
	acpi_poweroff();
}

/* main runs on the BSP, entered from entry.S with the physical address
 * of struct hvm_start_info. */
void main(uint32_t start_info)
{
	console_init();
	idt_init();
	idt_load();
	uint64_t rsdp;
	uint64_t ram_top = read_start_info(start_info, &rsdp);
	parse_cmdline();
	memory_init(ram_top);
	acpi_init(rsdp);
	pic_mask_all();
	lapic_init_this_cpu();
	clock_init();
	smp_start_aps();
	struct pci_device probe;
	(void)pci_find(1, &probe); /* scans the bus and assigns BARs once */
	/* Devices are started before "ready" in the modes that use them, so a
	 * host that waits for "ready" finds the guest answering. An idle guest
	 * leaves them alone (it is used to measure the VMM's own memory). */
	if (config.selftest || config.blkcmd)
		(void)blk_init();
	if (config.selftest || config.serve)
		(void)net_init();
	keyboard_init();
	kprintf("gureum-testguest: ready\n");

	if (config.fault)
		__asm__ volatile("ud2"); /* test word: the exception path */

	if (config.hostile)
		hostile_run(); /* opens its own devices; does not return */

	if (config.blkcmd)
		blkcmd_run(); /* does not return */
	if (config.selftest)
		run_selftests();
	if (config.serve)
		net_serve_forever();
	/* burn= without selftest: burn once, then idle like the default mode
	 * (a host sees a busy guest turn into an idle one that stays up; a
	 * reboot burns again). */
	if (config.burn_given)
		(void)burn_run("burn");
	for (;;) {
		cli();
		wait_for_interrupt_until(0);
	}
}
