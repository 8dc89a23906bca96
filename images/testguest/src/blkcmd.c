/*
 * blkcmd.c - disk commands on the serial console ("blkcmd" mode).
 *
 * The host's tests need the guest to do disk work at moments the host
 * chooses: write before a snapshot, write after it, measure IOPS while a
 * limit is set. In this mode the guest reads one command per line from
 * COM1 and answers with one line:
 *
 *   capacity                      -> blk: capacity N sectors
 *   write SECTOR COUNT SEED       -> blk write: ok sector=S count=N seed=P
 *                                    (pattern: see blk_write_pattern; flushed)
 *   iops SECONDS                  -> blk iops: ok ops=N seconds=T
 *   anything else                 -> blk cmd: unknown <line>
 *
 * Failures answer "blk write: fail <why>" or "blk iops: fail <why>".
 *
 * It also watches the disk's configuration-change interrupt (MSI-X vector
 * VEC_BLK_CONFIG): the device raises it when the host resizes, attaches or
 * detaches the disk, and the guest answers by reading the capacity again
 * and printing "blk: capacity N sectors" if it changed. That is what a
 * real driver does (Linux's virtio_blk resizes the block device).
 */
#include "testguest.h"
#include "x86.h"

#define LINE_MAX 128
#define POLL_MS 20 /* how often the idle loop looks at the serial port */

static char line[LINE_MAX];
static size_t line_len;
static uint64_t last_capacity;

static void report_capacity(void)
{
	last_capacity = blk_capacity_sectors();
	kprintf("blk: capacity %lu sectors\n", last_capacity);
}

/* word copies the next space-separated word of *s into out (NUL-ended). */
static const char *next_word(const char **s)
{
	static char w[LINE_MAX];
	size_t n = 0;
	while (**s == ' ')
		(*s)++;
	while (**s && **s != ' ' && n + 1 < sizeof w)
		w[n++] = *(*s)++;
	w[n] = 0;
	return w;
}

static bool next_number(const char **s, uint64_t *v)
{
	return parse_u64(next_word(s), NULL, v);
}

static void run_command(const char *cmd)
{
	const char *s = cmd;
	const char *verb = next_word(&s);
	const char *why = "";
	uint64_t a, b, c;
	if (verb[0] == 0)
		return;
	if (!memcmp(verb, "capacity", 9)) {
		report_capacity();
	} else if (!memcmp(verb, "write", 6)) {
		if (!next_number(&s, &a) || !next_number(&s, &b) || !next_number(&s, &c)) {
			kprintf("blk write: fail usage: write SECTOR COUNT SEED\n");
			return;
		}
		if (blk_write_pattern(a, b, c, &why))
			kprintf("blk write: ok sector=%lu count=%lu seed=%lu\n", a, b, c);
		else
			kprintf("blk write: fail %s\n", why);
	} else if (!memcmp(verb, "iops", 5)) {
		if (!next_number(&s, &a) || a == 0) {
			kprintf("blk iops: fail usage: iops SECONDS\n");
			return;
		}
		uint64_t ops;
		if (blk_measure_iops(a, false, &ops, &why))
			kprintf("blk iops: ok ops=%lu seconds=%lu\n", ops, a);
		else
			kprintf("blk iops: fail %s after %lu ops\n", why, ops);
	} else {
		kprintf("blk cmd: unknown %s\n", cmd);
	}
}

/* poll_console collects received bytes into a line and runs it at the
 * end of the line. */
static void poll_console(void)
{
	int ch;
	while ((ch = console_getc()) >= 0) {
		if (ch == '\n' || ch == '\r') {
			line[line_len] = 0;
			line_len = 0;
			run_command(line);
		} else if (line_len + 1 < LINE_MAX) {
			line[line_len++] = (char)ch;
		}
	}
}

void blkcmd_run(void)
{
	if (!blk_init())
		kprintf("blk cmd: no virtio-blk device %lu\n", config.blk_disk);
	report_capacity();
	kprintf("blk cmd: ready\n");
	for (;;) {
		/* Interrupts off while checking, so one that arrives between
		 * the check and the hlt wakes the hlt (sti; hlt is atomic). */
		cli();
		if (take_pending(VEC_BLK_CONFIG) && blk_capacity_sectors() != last_capacity)
			report_capacity();
		poll_console();
		wait_for_interrupt_until(rdtsc() + ms_to_tsc(POLL_MS));
	}
}
