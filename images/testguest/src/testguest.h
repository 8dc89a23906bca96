/*
 * testguest.h - declarations shared by the test guest's parts.
 *
 * The guest is one freestanding program: no libc, no kernel underneath.
 * The bootstrap vCPU (the BSP) runs main(), owns every device and does all
 * the I/O; the other vCPUs (APs) sleep until main() hands them CPU work.
 */
#ifndef TESTGUEST_H
#define TESTGUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_CPUS 16
#define PAGE_SIZE 4096

/* Interrupt vectors. 0..31 are CPU exceptions; the rest are ours. */
enum {
	VEC_TIMER = 0x20,      /* local APIC timer (one-shot deadlines) */
	VEC_KEYBOARD = 0x21,   /* IRQ 1 through the IOAPIC */
	VEC_BLK_CONFIG = 0x30, /* MSI-X: virtio-blk configuration change */
	VEC_BLK_QUEUE = 0x31,  /* MSI-X: virtio-blk request queue */
	VEC_NET_CONFIG = 0x38, /* MSI-X: virtio-net configuration change */
	VEC_NET_RX = 0x39,     /* MSI-X: virtio-net receive queue */
	VEC_NET_TX = 0x3a,     /* MSI-X: virtio-net transmit queue */
	VEC_WAKE = 0x40,       /* IPI: BSP -> AP "you have work" */
	VEC_DONE = 0x41,       /* IPI: AP -> BSP "work finished" */
	VEC_SPURIOUS = 0xff,
};

/* string.c: memory and string routines (rep-instruction based) */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
bool str_starts(const char *s, const char *prefix);
bool parse_u64(const char *s, const char **end, uint64_t *out);
bool parse_ipv4(const char *s, const char **end, uint32_t *ip);

/* console.c: COM1 output */
void console_init(void);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int console_getc(void); /* a received byte, or -1 if none waits */
int ksnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* memory.c: page-aligned bump allocation of guest RAM for rings and buffers */
void memory_init(uint64_t ram_top);
void *alloc_pages(size_t bytes);
void *alloc_buffer(size_t bytes);
uint64_t memory_free_bytes(void);

/* acpi.c: firmware tables */
struct acpi_info {
	uint32_t cpu_count;
	uint8_t apic_ids[MAX_CPUS];
	uint64_t ioapic_addr;
	uint32_t ioapic_gsi_base;
	uint32_t keyboard_gsi;      /* IRQ 1 after interrupt source overrides */
	bool keyboard_level_low;    /* polarity/trigger from the override */
	uint64_t ecam_base;         /* 0: no MCFG, use ports 0xcf8/0xcfc */
	uint8_t ecam_bus_start, ecam_bus_end;
};
extern struct acpi_info acpi;
void acpi_init(uint64_t rsdp_hint);
void acpi_poweroff(void) __attribute__((noreturn));
void machine_reboot(void) __attribute__((noreturn));

/* interrupts.c: IDT, local APIC, IOAPIC, 8259 */
void idt_init(void);
void idt_load(void);
void lapic_init_this_cpu(void);
uint32_t lapic_id(void);
void lapic_eoi(void);
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
void ioapic_route(uint32_t gsi, uint8_t vector, uint32_t dest_apic, bool level_low);
void pic_mask_all(void);
/* Pending-interrupt bits for vectors 0x20..0x5f, set by handlers, consumed
 * by the BSP's main loop with take_pending(). */
bool take_pending(uint8_t vector);
void interrupt_dispatch(uint64_t *frame);

/* clock.c: TSC time and sleeping until a deadline */
extern uint64_t tsc_khz;
void clock_init(void);
void clock_init_this_cpu(void);
static inline uint64_t ms_to_tsc(uint64_t ms) { return ms * tsc_khz; }
uint64_t tsc_to_ms(uint64_t ticks);
void wait_for_interrupt_until(uint64_t deadline_tsc);

/* smp.c: application processors */
typedef void (*ap_work_fn)(uint64_t arg);
extern uint32_t cpus_online;
extern uint32_t bsp_apic_id;
void smp_start_aps(void);
int cpu_index_of_apic(uint32_t apic_id);
bool ap_give_work(int cpu, ap_work_fn fn, uint64_t arg);
bool ap_is_busy(int cpu);
void burn_tsc(uint64_t ticks);
void ap_main(void);

/* pci.c: configuration space and BARs */
struct pci_device {
	uint8_t bus, dev, fn;
	uint16_t vendor, device, subsystem;
};
uint32_t pci_read32(const struct pci_device *d, uint16_t off);
uint16_t pci_read16(const struct pci_device *d, uint16_t off);
uint8_t pci_read8(const struct pci_device *d, uint16_t off);
void pci_write32(const struct pci_device *d, uint16_t off, uint32_t v);
void pci_write16(const struct pci_device *d, uint16_t off, uint16_t v);
bool pci_find(uint16_t virtio_type, struct pci_device *out);
bool pci_find_nth(uint16_t virtio_type, uint32_t n, struct pci_device *out);
uint64_t pci_bar_address(const struct pci_device *d, int bar);
void pci_enable(const struct pci_device *d);
uint8_t pci_find_capability(const struct pci_device *d, uint8_t id, uint8_t start);

/* keyboard.c: Ctrl-Alt-Del on the i8042 */
void keyboard_init(void);
void keyboard_interrupt(void);

/* blk.c, net.c: self tests and serving */
#define MAX_PEERS 4
struct config {
	bool selftest, serve, fault;
	uint32_t ip, netmask, gateway;
	char name[64];
	uint64_t blk_mib;
	uint64_t net_wait_s;
	bool burn_given;
	uint32_t burn_cpus;  /* bit mask of vCPU indexes */
	uint64_t burn_s;
	bool hostile;            /* hostile.c: attack the virtio devices */
	uint64_t hostile_hold_s; /* seconds to stay up after the attacks */
	uint64_t blk_disk;       /* which virtio-blk device (0 = first) blk uses */
	uint64_t blkiops_s;      /* blkiops self test: seconds, 0 = skip */
	uint32_t blkiops_modes;  /* bit 0: random reads, bit 1: random writes */
	bool blkcmd;             /* blkcmd.c: take disk commands on the console */
	uint32_t peers[MAX_PEERS]; /* peer.c: addresses serve mode probes */
	uint32_t peer_count;
	uint64_t peer_wait_s;      /* seconds the probe retries (default 30) */
};
extern struct config config;

enum result { RESULT_OK, RESULT_FAIL, RESULT_SKIP };
bool blk_init(void);
bool net_init(void);
enum result blk_selftest(void);
/* blk.c: the pieces the console commands and blkiops use */
uint64_t blk_capacity_sectors(void);
bool blk_write_pattern(uint64_t sector, uint64_t count, uint64_t seed, const char **why);
bool blk_measure_iops(uint64_t seconds, bool write, uint64_t *ops, const char **why);
enum result blkiops_selftest(void);
void blkcmd_run(void) __attribute__((noreturn));
enum result net_selftest(void);
void net_serve_forever(void) __attribute__((noreturn));
/* peer.c: serve mode's probe of the peer= addresses, one line each */
void peer_probe_all(void);

/* hostile.c: malformed chains and configurations against the virtio
 * devices, each followed by a normal request; then power-off. */
void hostile_run(void) __attribute__((noreturn));

#endif
