/*
 * hostile.c - the "hostile" mode: the guest turns against its own virtio
 * devices to check that the VMM survives a malicious driver.
 *
 * A virtio device trusts nothing in guest memory: descriptor addresses,
 * lengths, NEXT links and ring indexes are all written by the driver, and
 * a VMM that follows them blindly can be made to read or write host memory
 * outside guest RAM, loop for ever, or crash. Here the guest plays that
 * driver. For the first virtio-blk device (and the first virtio-net
 * device, whose transmit queue reads chains the same way) it publishes one
 * kind of malformed chain or bad configuration at a time, waits a bounded
 * time for the device to hand the chain back, and then issues a normal,
 * well-formed request. The attack is "survived" when that request works.
 *
 * The VMM's contract (docs/virtio.md) is to return a malformed chain on
 * the used ring with 0 bytes written and count a device error. A device
 * may also stop a queue whose ring is broken; the driver then resets the
 * device (device_status 0) and sets it up again, as a real driver would.
 *
 * The guest drives the rings directly here instead of through virtq_add:
 * it writes descriptors at fixed indexes, publishes heads itself and reads
 * the used ring without trusting the ids in it (a bad head comes back as
 * is). Each attack reuses the same descriptor slots, since the previous
 * chain has come back or the device was reset.
 *
 * Output, one line per attack and device (NAME is "blk.<attack>" or
 * "net.<attack>"):
 *   hostile NAME: survived DETAIL | hostile NAME: broken DETAIL
 *   hostile counts: blk chains=N blk refused-sizes=N net chains=N net refused-sizes=N
 *   hostile done: N survived, N broken
 * "chains" is the number of malformed chains published (each should add
 * one to the device's error counter); "refused-sizes" the bad queue sizes
 * the device refused (each adds one to the transport's error counter).
 */
#include "virtio.h"
#include "x86.h"

#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_NET_F_MAC 5

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1

#define QUEUE_ENTRIES 64     /* blk request queue */
#define NET_QUEUE_ENTRIES 32 /* net receive and transmit queues */
#define INDIRECT_ENTRIES 64  /* room in each indirect table */
#define NET_HDR 12           /* struct virtio_net_hdr with VERSION_1 */
#define ATTACK_WAIT_MS 500   /* a returned chain comes back within milliseconds */
#define FOLLOW_UP_WAIT_MS 20000 /* generous: only a broken device waits this long */
#define OUTSIDE_RAM 0x7f0000000000ull
#define MMIO_HOLE 0xc0000000ull /* layout.PCIMMIOStart: the devices' BARs */
#define SECTOR_STAMP 1    /* the follow-up reads this sector back */
#define SECTOR_SCRATCH 64 /* hostile write requests name this sector */
#define STAMP 0x686f7374696c6521ull

/* One device under attack: the queue that reads chains (blk's request
 * queue, net's transmit queue) and how to bring the device up and use it. */
struct target {
	const char *name;
	struct virtio_device dev;
	struct virtq q;      /* the attacked queue */
	struct virtq rx;     /* net only: the receive queue, left empty */
	uint16_t q_index;    /* its queue index */
	uint8_t vector;      /* its MSI-X vector */
	bool has_status;     /* blk: chains end with a writable status byte */
	bool (*start)(struct target *t);
	bool (*normal)(struct target *t, const char **why);
	uint32_t chains;     /* malformed chains published */
	uint32_t refused;    /* bad queue sizes the device refused */
	uint32_t survived, broken;
};

/* Guest RAM shared by all attacks: headers, status, data, tables. */
static struct {
	uint8_t *header;   /* blk request header, or zeroed net header */
	volatile uint8_t *status;
	uint8_t *data;     /* 4 KiB */
	struct virtq_desc *table, *table2; /* indirect tables */
	uint64_t ram_top;  /* end of the RAM region the guest runs in */
} mem;

static struct target blk_target, net_target;
static uint8_t net_mac[6];

/* ---- rings, driven by hand ---- */

static void set_desc(struct virtq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	q->desc[i] = (struct virtq_desc){addr, len, flags, next};
}

/* publish puts `head` on the available ring and kicks the queue. */
static void publish(struct virtq *q, uint16_t head)
{
	q->avail->ring[q->avail->idx & (q->size - 1)] = head;
	barrier();
	q->avail->idx = (uint16_t)(q->avail->idx + 1);
	full_fence(); /* the index is visible before the kick */
	virtq_kick(q);
}

/* wait_used waits up to ms for the device to return chains and consumes
 * them all; it returns how many came back (0: timeout) and the last one. */
static int wait_used(struct target *t, uint64_t ms, struct virtq_used_elem *last)
{
	struct virtq *q = &t->q;
	uint64_t deadline = rdtsc() + ms_to_tsc(ms);
	for (;;) {
		cli();
		(void)take_pending(t->vector);
		uint16_t idx = *(volatile uint16_t *)&q->used->idx;
		if (idx != q->last_used) {
			barrier();
			int n = 0;
			while (q->last_used != idx) {
				*last = q->used->ring[q->last_used & (q->size - 1)];
				q->last_used = (uint16_t)(q->last_used + 1);
				n++;
			}
			return n;
		}
		if (rdtsc() >= deadline)
			return 0;
		wait_for_interrupt_until(deadline);
	}
}

/* ---- virtio-blk ---- */

static bool blk_start(struct target *t)
{
	if (!virtio_negotiate(&t->dev, 1ull << VIRTIO_F_RING_INDIRECT_DESC))
		return false;
	if (!virtio_set_config_vector(&t->dev, 0, VEC_BLK_CONFIG) ||
	    !virtio_setup_queue(&t->dev, &t->q, 0, QUEUE_ENTRIES, 1, VEC_BLK_QUEUE))
		return false;
	virtio_driver_ok(&t->dev);
	return true;
}

/* blk_request runs one well-formed 512-byte request on sector `sector`
 * through descriptors 0..2 and checks status and used length. */
static bool blk_request(struct target *t, uint32_t type, uint64_t sector, const char **why)
{
	struct virtq *q = &t->q;
	uint64_t *hdr = (uint64_t *)mem.header;
	hdr[0] = type; /* type, reserved */
	hdr[1] = sector;
	*mem.status = 0xff;
	uint16_t data_flags = type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0;
	set_desc(q, 0, (uint64_t)mem.header, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(q, 1, (uint64_t)mem.data, 512, (uint16_t)(data_flags | VIRTQ_DESC_F_NEXT), 2);
	set_desc(q, 2, (uint64_t)mem.status, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(q, 0);
	struct virtq_used_elem e;
	if (!wait_used(t, FOLLOW_UP_WAIT_MS, &e)) {
		*why = "no answer";
		return false;
	}
	uint32_t want = type == VIRTIO_BLK_T_IN ? 513 : 1;
	if (e.id != 0 || e.len != want || *mem.status != 0) {
		*why = "bad completion";
		return false;
	}
	return true;
}

/* blk_normal reads the stamped sector back and checks the stamp. */
static bool blk_normal(struct target *t, const char **why)
{
	uint64_t *d = (uint64_t *)mem.data;
	d[0] = 0;
	if (!blk_request(t, VIRTIO_BLK_T_IN, SECTOR_STAMP, why))
		return false;
	if (d[0] != STAMP) {
		*why = "read back wrong data";
		return false;
	}
	return true;
}

/* ---- virtio-net ---- */

static bool net_start(struct target *t)
{
	if (!virtio_negotiate(&t->dev, 1ull << VIRTIO_F_RING_INDIRECT_DESC | 1ull << VIRTIO_NET_F_MAC))
		return false;
	if (!virtio_set_config_vector(&t->dev, 0, VEC_NET_CONFIG) ||
	    !virtio_setup_queue(&t->dev, &t->rx, 0, NET_QUEUE_ENTRIES, 1, VEC_NET_RX) ||
	    !virtio_setup_queue(&t->dev, &t->q, 1, NET_QUEUE_ENTRIES, 2, VEC_NET_TX))
		return false;
	for (int i = 0; i < 6; i++)
		net_mac[i] = virtio_has(&t->dev, VIRTIO_NET_F_MAC) ? mmio_read8(t->dev.device_cfg + (uint64_t)i)
								  : (uint8_t)(i ? 0x42 : 0x02);
	virtio_driver_ok(&t->dev);
	return true;
}

/* net_normal transmits one broadcast ARP request (who has the gateway)
 * and checks the device hands the buffer back. */
static bool net_normal(struct target *t, const char **why)
{
	uint8_t *b = mem.data;
	memset(b, 0, NET_HDR + 60);
	uint8_t *f = b + NET_HDR;
	memset(f, 0xff, 6);
	memcpy(f + 6, net_mac, 6);
	f[12] = 0x08, f[13] = 0x06;                               /* ARP */
	f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0, f[18] = 6, f[19] = 4; /* Ethernet, IPv4 */
	f[21] = 1;                                                /* request */
	memcpy(f + 22, net_mac, 6);
	for (int i = 0; i < 4; i++) {
		f[28 + i] = (uint8_t)(config.ip >> (24 - 8 * i));
		f[38 + i] = (uint8_t)(config.gateway >> (24 - 8 * i));
	}
	set_desc(&t->q, 0, (uint64_t)b, NET_HDR + 60, 0, 0);
	publish(&t->q, 0);
	struct virtq_used_elem e;
	if (!wait_used(t, FOLLOW_UP_WAIT_MS, &e)) {
		*why = "no answer";
		return false;
	}
	if (e.id != 0) {
		*why = "bad completion";
		return false;
	}
	return true;
}

/* ---- building hostile chains ---- */

/* chain_prefix writes descriptor 0: a valid readable header (blk: a write
 * request for the scratch sector; net: a zeroed virtio_net_hdr) linked to
 * descriptor 1, where the hostile part starts. */
static void chain_prefix(struct target *t)
{
	uint32_t len = t->has_status ? 16 : NET_HDR;
	memset(mem.header, 0, 16);
	if (t->has_status) {
		uint64_t *hdr = (uint64_t *)mem.header;
		hdr[0] = VIRTIO_BLK_T_OUT;
		hdr[1] = SECTOR_SCRATCH;
	}
	set_desc(&t->q, 0, (uint64_t)mem.header, len, VIRTQ_DESC_F_NEXT, 1);
}

/* chain_suffix ends the chain after descriptor `last`: blk links it to a
 * writable status byte in the table's last slot, net ends it there. */
static void chain_suffix(struct target *t, uint16_t last)
{
	struct virtq *q = &t->q;
	if (!t->has_status) {
		q->desc[last].flags &= (uint16_t)~VIRTQ_DESC_F_NEXT;
		return;
	}
	uint16_t s = (uint16_t)(q->size - 1);
	*mem.status = 0xff;
	q->desc[last].flags |= VIRTQ_DESC_F_NEXT;
	q->desc[last].next = s;
	set_desc(q, s, (uint64_t)mem.status, 1, VIRTQ_DESC_F_WRITE, 0);
}

/* One attack's progress, reported on its line. */
struct attempt {
	char detail[160];
	size_t n;
	bool restart; /* the attack left the device unusable: set it up again */
	bool bad;     /* the device answered wrongly, or could not be restarted */
};

static void note(struct attempt *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct attempt *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (a->n < sizeof a->detail)
		a->n += (size_t)kvsnprintf(a->detail + a->n, sizeof a->detail - a->n, fmt, ap);
	va_end(ap);
	if (a->n >= sizeof a->detail)
		a->n = sizeof a->detail - 1;
}

/* submit_bad publishes the chain at `head` (already written), counts it as
 * malformed and records how the device answered: returned with 0 bytes
 * (gureum's contract), returned with only an error status (blk: also a
 * refusal), returned with other bytes (wrong: it acted on a chain it
 * should have refused), or kept (allowed: some devices, QEMU's among them,
 * stop on a malformed chain until reset). A kept chain is followed by a
 * reset and a fresh set-up, so the attack's next chain meets a working
 * device. */
static void submit_bad(struct target *t, struct attempt *a, const char *what, uint16_t head)
{
	publish(&t->q, head);
	t->chains++;
	struct virtq_used_elem e;
	if (!wait_used(t, ATTACK_WAIT_MS, &e)) {
		note(a, "%s%s kept, reset", a->n ? ", " : "", what);
		if (!t->start(t))
			a->bad = true;
		return;
	}
	if (e.len == 1 && t->has_status && *mem.status != 0 && *mem.status != 0xff) {
		/* Also a refusal: an error status in the request's last byte. */
		note(a, "%s%s failed with status %u", a->n ? ", " : "", what, *mem.status);
		return;
	}
	if (e.len != 0) {
		note(a, "%s%s returned %u bytes, status %u", a->n ? ", " : "", what, e.len, *mem.status);
		a->bad = true;
		return;
	}
	note(a, "%s%s refused", a->n ? ", " : "", what);
}

/* bad_buffer publishes prefix + one buffer [addr, addr+len) + suffix. */
static void bad_buffer(struct target *t, struct attempt *a, const char *what, uint64_t addr, uint32_t len)
{
	chain_prefix(t);
	set_desc(&t->q, 1, addr, len, 0, 0);
	chain_suffix(t, 1);
	submit_bad(t, a, what, 0);
}

static void attack_outside_ram(struct target *t, struct attempt *a)
{
	bad_buffer(t, a, "0x7f0000000000", OUTSIDE_RAM, 512);
	bad_buffer(t, a, "straddling RAM end", mem.ram_top - 256, 512);
}

static void attack_in_hole(struct target *t, struct attempt *a)
{
	bad_buffer(t, a, "0xc0000000", MMIO_HOLE, 512);
}

static void attack_loop(struct target *t, struct attempt *a)
{
	struct virtq *q = &t->q;
	chain_prefix(t);
	set_desc(q, 1, (uint64_t)mem.data, 64, VIRTQ_DESC_F_NEXT, 1); /* NEXT points at itself */
	submit_bad(t, a, "self loop", 0);
	chain_prefix(t);
	set_desc(q, 1, (uint64_t)mem.data, 64, VIRTQ_DESC_F_NEXT, 2);
	set_desc(q, 2, (uint64_t)mem.data, 64, VIRTQ_DESC_F_NEXT, 1); /* 1 -> 2 -> 1 */
	submit_bad(t, a, "2-cycle", 0);
}

/* attack_oversize: one buffer of 0xffffffff bytes, then a chain of buffers
 * each inside RAM (all the same large range) whose lengths add up past
 * 4 GiB, so only the sum is wrong. When the ring is too small for that
 * many descriptors, they go into an indirect table. */
static void attack_oversize(struct target *t, struct attempt *a)
{
	struct virtq *q = &t->q;
	bad_buffer(t, a, "len 0xffffffff", (uint64_t)mem.data, 0xffffffffu);
	uint64_t base = 0x100000, len = (mem.ram_top - base) & ~(uint64_t)(PAGE_SIZE - 1);
	if (len > 0x7fffffffull)
		len = 0x7fffffffull;
	uint64_t n = (1ull << 32) / len + 1;
	if (n + 2 > INDIRECT_ENTRIES) {
		/* RAM too small for valid pieces: use 2 GiB ones. */
		len = 0x80000000ull;
		n = 2;
	}
	bool indirect = n + 2 > q->size;
	struct virtq_desc *d = indirect ? mem.table : q->desc;
	chain_prefix(t);
	d[0] = q->desc[0];
	for (uint16_t i = 1; i <= n; i++)
		d[i] = (struct virtq_desc){base, (uint32_t)len, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1)};
	uint16_t entries = (uint16_t)(n + 1);
	if (t->has_status) {
		*mem.status = 0xff;
		d[n + 1] = (struct virtq_desc){(uint64_t)mem.status, 1, VIRTQ_DESC_F_WRITE, 0};
		entries++;
	} else {
		d[n].flags = 0;
	}
	if (indirect)
		set_desc(q, 0, (uint64_t)mem.table, 16u * entries, VIRTQ_DESC_F_INDIRECT, 0);
	submit_bad(t, a, indirect ? "indirect sum past 4 GiB" : "sum past 4 GiB", 0);
	note(a, " (%lu x %lu bytes)", n, len);
}

/* indirect_table fills `table` with a whole valid request (blk: header,
 * status; net: header) and returns its entry count. */
static uint16_t indirect_table(struct target *t, struct virtq_desc *table)
{
	chain_prefix(t); /* only to fill the header bytes */
	uint32_t hlen = t->has_status ? 16 : NET_HDR;
	table[0] = (struct virtq_desc){(uint64_t)mem.header, hlen, 0, 0};
	if (!t->has_status)
		return 1;
	*mem.status = 0xff;
	table[0].flags = VIRTQ_DESC_F_NEXT;
	table[0].next = 1;
	table[1] = (struct virtq_desc){(uint64_t)mem.status, 1, VIRTQ_DESC_F_WRITE, 0};
	return 2;
}

static void attack_indirect_nested(struct target *t, struct attempt *a)
{
	/* table: [header] -> [INDIRECT -> table2] ; table2 is a valid table. */
	uint16_t n2 = indirect_table(t, mem.table2);
	mem.table[0] = (struct virtq_desc){(uint64_t)mem.header, t->has_status ? 16u : NET_HDR, VIRTQ_DESC_F_NEXT, 1};
	mem.table[1] = (struct virtq_desc){(uint64_t)mem.table2, 16u * n2, VIRTQ_DESC_F_INDIRECT, 0};
	set_desc(&t->q, 0, (uint64_t)mem.table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	submit_bad(t, a, "indirect inside indirect", 0);
}

static void attack_indirect_outside(struct target *t, struct attempt *a)
{
	set_desc(&t->q, 0, OUTSIDE_RAM, 16 * 4, VIRTQ_DESC_F_INDIRECT, 0);
	submit_bad(t, a, "table at 0x7f0000000000", 0);
	/* A valid table made to straddle the end of RAM. */
	set_desc(&t->q, 0, mem.ram_top - 16, 16 * 4, VIRTQ_DESC_F_INDIRECT, 0);
	submit_bad(t, a, "table straddling RAM end", 0);
}

static void attack_bad_head(struct target *t, struct attempt *a)
{
	submit_bad(t, a, "head = queue size", t->q.size);
	submit_bad(t, a, "head 0xffff", 0xffff);
}

/* attack_avail_jump moves avail.idx more than a queue's worth ahead: the
 * device cannot have that many chains, so it may stop the queue. Not a
 * chain, so not counted as one. */
static void attack_avail_jump(struct target *t, struct attempt *a)
{
	struct virtq *q = &t->q;
	q->avail->idx = (uint16_t)(q->avail->idx + q->size + 7);
	full_fence();
	virtq_kick(q);
	struct virtq_used_elem e;
	int n = wait_used(t, ATTACK_WAIT_MS, &e);
	if (n == 0) {
		note(a, "queue stopped");
		a->restart = true;
	} else {
		note(a, "device returned %d chains", n);
	}
}

/* attack_bad_queue_size resets the device and offers sizes a correct
 * device must refuse before it enables the queue; set-up then proceeds
 * normally. An accepted size is fine only if it reads back valid. */
static void attack_bad_queue_size(struct target *t, struct attempt *a)
{
	static const uint16_t sizes[] = {63, 100, 1024, 0};
	struct virtq *q = &t->q;
	if (!virtio_negotiate(&t->dev, 1ull << VIRTIO_F_RING_INDIRECT_DESC)) {
		note(a, "negotiation failed");
		a->bad = true;
		return;
	}
	uint16_t max = 0;
	bool fresh = true; /* right after a reset, queue_size reads the maximum */
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint16_t before, read;
		bool enabled = virtio_try_queue_size(&t->dev, q, t->q_index, sizes[i], &before, &read);
		if (fresh)
			max = before;
		fresh = false;
		if (!enabled) {
			t->refused++;
			note(a, "%s%u refused", i ? ", " : "", sizes[i]);
			continue;
		}
		bool valid = read && !(read & (read - 1)) && read <= max;
		note(a, "%s%u enabled as %u (max %u)", i ? ", " : "", sizes[i], read, max);
		if (!valid)
			a->bad = true;
		/* An enabled queue cannot be reconfigured: start over. */
		if (!virtio_negotiate(&t->dev, 1ull << VIRTIO_F_RING_INDIRECT_DESC))
			a->bad = true;
		fresh = true;
	}
	a->restart = true; /* the follow-up needs a full set-up */
}

static void attack_short_status(struct target *t, struct attempt *a)
{
	struct virtq *q = &t->q;
	/* header and data, both readable: nowhere to put a status */
	chain_prefix(t);
	set_desc(q, 1, (uint64_t)mem.data, 512, 0, 0);
	submit_bad(t, a, "no writable byte", 0);
	/* an 8-byte header, then the status: the header is cut short */
	chain_prefix(t);
	q->desc[0].len = 8;
	q->desc[0].next = q->size - 1;
	*mem.status = 0xff;
	set_desc(q, (uint16_t)(q->size - 1), (uint64_t)mem.status, 1, VIRTQ_DESC_F_WRITE, 0);
	submit_bad(t, a, "8-byte header", 0);
	if (*mem.status != 0xff)
		note(a, " (status written)");
}

struct attack {
	const char *name;
	void (*run)(struct target *t, struct attempt *a);
	bool blk_only;
};

static const struct attack attacks[] = {
	{"desc-outside-ram", attack_outside_ram, false},
	{"desc-in-hole", attack_in_hole, false},
	{"loop", attack_loop, false},
	{"oversize", attack_oversize, false},
	{"indirect-nested", attack_indirect_nested, false},
	{"indirect-outside", attack_indirect_outside, false},
	{"bad-head", attack_bad_head, false},
	{"avail-jump", attack_avail_jump, false},
	{"bad-queue-size", attack_bad_queue_size, false},
	{"short-status", attack_short_status, true},
};

/* run_attack runs one attack and its follow-up request and prints the
 * verdict. After a stopped queue (or a reconfiguration) the device is
 * reset and started again first. */
static void run_attack(struct target *t, const struct attack *k)
{
	struct attempt a = {0};
	k->run(t, &a);
	const char *why = "";
	bool ok = !a.bad;
	if (a.restart) { /* also after a bad answer: the next attack needs a device */
		if (!t->start(t)) {
			why = "restart failed";
			ok = false;
		} else {
			note(&a, ", reset");
		}
	}
	if (ok && !t->normal(t, &why))
		ok = false;
	if (ok) {
		t->survived++;
		kprintf("hostile %s.%s: survived %s, then a normal request worked\n", t->name, k->name, a.detail);
	} else {
		t->broken++;
		kprintf("hostile %s.%s: broken %s%s%s\n", t->name, k->name, a.detail, *why ? "; follow-up: " : "", why);
	}
}

static void run_target(struct target *t)
{
	const char *why = "";
	if (!t->start(t)) {
		kprintf("hostile %s.start: broken device set-up failed\n", t->name);
		t->broken++;
		return;
	}
	if (t->has_status) {
		/* Stamp the sector every follow-up reads back. */
		memset(mem.data, 0, 512);
		*(uint64_t *)mem.data = STAMP;
		if (!blk_request(t, VIRTIO_BLK_T_OUT, SECTOR_STAMP, &why)) {
			kprintf("hostile %s.start: broken first write: %s\n", t->name, why);
			t->broken++;
			return;
		}
	}
	if (!t->normal(t, &why)) {
		kprintf("hostile %s.start: broken first request: %s\n", t->name, why);
		t->broken++;
		return;
	}
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
		if (t->has_status || !attacks[i].blk_only)
			run_attack(t, &attacks[i]);
}

void hostile_run(void)
{
	mem.header = alloc_pages(PAGE_SIZE);
	mem.status = (volatile uint8_t *)(mem.header + 64);
	mem.data = alloc_pages(PAGE_SIZE);
	mem.table = alloc_pages(PAGE_SIZE);
	mem.table2 = mem.table + INDIRECT_ENTRIES;
	/* The end of RAM: the allocator hands out pages up to it. */
	uint8_t *probe = alloc_pages(PAGE_SIZE);
	mem.ram_top = (uint64_t)probe + PAGE_SIZE + memory_free_bytes();

	blk_target = (struct target){.name = "blk", .q_index = 0, .vector = VEC_BLK_QUEUE, .has_status = true,
				     .start = blk_start, .normal = blk_normal};
	net_target = (struct target){.name = "net", .q_index = 1, .vector = VEC_NET_TX, .has_status = false,
				     .start = net_start, .normal = net_normal};
	struct target *targets[2] = {&blk_target, &net_target};
	uint16_t types[2] = {2, 1};
	uint32_t survived = 0, broken = 0;
	for (int i = 0; i < 2; i++) {
		struct target *t = targets[i];
		if (!virtio_open(&t->dev, types[i])) {
			kprintf("hostile %s: skip no device\n", t->name);
			continue;
		}
		run_target(t);
		survived += t->survived;
		broken += t->broken;
		/* Leave the device quiet: reset it. */
		(void)virtio_negotiate(&t->dev, 0);
	}
	kprintf("hostile counts: blk chains=%u blk refused-sizes=%u net chains=%u net refused-sizes=%u\n",
		blk_target.chains, blk_target.refused, net_target.chains, net_target.refused);
	kprintf("hostile done: %u survived, %u broken\n", survived, broken);
	if (config.hostile_hold_s) {
		/* Stay up (interrupts on: Ctrl-Alt-Del still powers off) so
		 * the host can read the VMM's counters first. */
		uint64_t deadline = rdtsc() + ms_to_tsc(config.hostile_hold_s * 1000);
		while (rdtsc() < deadline) {
			cli();
			wait_for_interrupt_until(deadline);
		}
	}
	acpi_poweroff();
}
