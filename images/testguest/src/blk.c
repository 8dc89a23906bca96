/*
 * blk.c - the virtio-blk driver and the "blk" self test.
 *
 * A virtio-blk request is one descriptor chain on queue 0:
 *   [16-byte header: type, reserved, sector]  device reads
 *   [data buffers]                            device reads (write) or writes (read)
 *   [1 status byte]                           device writes: 0 = OK
 * Sectors are always 512 bytes in the protocol, whatever the disk's
 * logical block size.
 *
 * The test writes a pattern over a range of the disk with several 1 MiB
 * requests in flight, flushes, reads the range back and compares a 64-bit
 * sum over the data written with one over the data read.
 *
 * Touching memory is what costs most when every instruction is emulated,
 * so the pattern is built once: a 4 KiB seed page copied over a 4 MiB
 * buffer with "rep movsq". For each 4 MiB of disk only the first qword of
 * every page is rewritten, with that page's disk offset (a "stamp"), so
 * misplaced data changes the sum, and the written sum follows from the
 * seed page's sum without reading the buffer. Before reading back, the
 * stamps are zeroed, so a page the device did not fill cannot pass. Only
 * the time between submitting requests and their completion is counted,
 * not the guest's own pattern and sum work.
 *
 * The device is the config.blk_disk-th virtio-blk device (blk.disk=N).
 * Besides the self test this file has what the disk commands need
 * (blkcmd.c, and the blkiops self test): a pattern writer whose bytes the
 * host can compute, and an IOPS meter.
 */
#include "virtio.h"
#include "x86.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8

#define REQUEST_BYTES (1u << 20)
#define IN_FLIGHT 4
#define CHUNK_BYTES (IN_FLIGHT * REQUEST_BYTES)
#define MAX_SEGMENTS 16
#define REQUEST_TIMEOUT_MS 60000

struct blk_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* One request slot: its header and status live in guest RAM the device
 * can reach, like the data. */
struct blk_slot {
	struct blk_header header;
	volatile uint8_t status;
	bool busy;
};

static struct virtio_device dev;
static struct virtq queue;
static struct blk_slot *slots;
static uint32_t segment_bytes = REQUEST_BYTES;
static uint32_t segments_max = MAX_SEGMENTS;
static uint64_t seed_page[512];
static uint64_t seed_sum;

static int blk_state; /* 0 not tried, 1 ready, -1 absent */

/* blk_init finds and starts the first virtio-blk device, once. */
bool blk_init(void)
{
	if (blk_state)
		return blk_state > 0;
	blk_state = -1;
	if (!virtio_open_nth(&dev, 2, (uint32_t)config.blk_disk))
		return false;
	uint64_t want = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_RO |
			1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
	if (!virtio_negotiate(&dev, want))
		fatal("virtio-blk feature negotiation failed");
	/* size_max and seg_max bound each data buffer and their number. */
	if (virtio_has(&dev, VIRTIO_BLK_F_SIZE_MAX)) {
		uint32_t m = mmio_read32(dev.device_cfg + 8) & ~(uint32_t)(PAGE_SIZE - 1);
		if (m >= PAGE_SIZE && m < segment_bytes)
			segment_bytes = m;
	}
	if (virtio_has(&dev, VIRTIO_BLK_F_SEG_MAX)) {
		uint32_t m = mmio_read32(dev.device_cfg + 12);
		if (m >= 1 && m < segments_max)
			segments_max = m;
	}
	if (!virtio_set_config_vector(&dev, 0, VEC_BLK_CONFIG) ||
	    !virtio_setup_queue(&dev, &queue, 0, 64, 1, VEC_BLK_QUEUE))
		fatal("virtio-blk queue setup failed");
	virtio_driver_ok(&dev);
	slots = alloc_pages(sizeof(struct blk_slot) * (IN_FLIGHT + 1));
	blk_state = 1;
	return true;
}

/* capacity_sectors reads the 64-bit capacity as two 32-bit halves. The
 * device may change it between the two reads (a resize), so the read is
 * repeated until config_generation (common configuration byte 0x15) is
 * the same before and after: the virtio way to read a consistent value. */
static uint64_t capacity_sectors(void)
{
	for (;;) {
		uint8_t gen = mmio_read8(dev.common + 0x15);
		uint32_t lo = mmio_read32(dev.device_cfg), hi = mmio_read32(dev.device_cfg + 4);
		if (mmio_read8(dev.common + 0x15) == gen)
			return (uint64_t)hi << 32 | lo;
	}
}

uint64_t blk_capacity_sectors(void) { return blk_state > 0 ? capacity_sectors() : 0; }

/* submit queues one request on slot s; data may be NULL (flush). */
static bool submit(struct blk_slot *s, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	struct virtq_buf bufs[MAX_SEGMENTS + 2];
	int n = 0;
	s->header = (struct blk_header){type, 0, sector};
	s->status = 0xff;
	bufs[n++] = (struct virtq_buf){&s->header, sizeof s->header, false};
	bool device_writes = type != VIRTIO_BLK_T_OUT;
	for (uint32_t off = 0; off < len; off += segment_bytes) {
		uint32_t l = len - off < segment_bytes ? len - off : segment_bytes;
		if (n - 1 >= (int)segments_max)
			return false;
		bufs[n++] = (struct virtq_buf){(uint8_t *)data + off, l, device_writes};
	}
	bufs[n++] = (struct virtq_buf){(void *)&s->status, 1, true};
	if (virtq_add(&queue, bufs, n, s) < 0)
		return false;
	s->busy = true;
	return true;
}

/* wait_all sleeps until every busy slot completes; false on timeout or
 * on a request whose status is not OK. */
static bool wait_all(const char **why)
{
	uint64_t deadline = rdtsc() + ms_to_tsc(REQUEST_TIMEOUT_MS);
	bool ok = true;
	for (;;) {
		cli();
		(void)take_pending(VEC_BLK_QUEUE);
		struct blk_slot *s;
		while ((s = virtq_get_used(&queue, NULL)) != NULL) {
			s->busy = false;
			if (s->status != 0) {
				ok = false;
				*why = s->status == 2 ? "unsupported request" : "I/O error";
			}
		}
		bool busy = false;
		for (int i = 0; i <= IN_FLIGHT; i++)
			busy |= slots[i].busy;
		if (!busy)
			return ok;
		if (rdtsc() >= deadline) {
			*why = "timeout";
			return false;
		}
		wait_for_interrupt_until(deadline);
	}
}

/* The request size for the part of the range starting at off. */
static uint32_t request_len(uint64_t off, uint64_t total)
{
	return total - off < REQUEST_BYTES ? (uint32_t)(total - off) : REQUEST_BYTES;
}

/* transfer_chunk moves `len` bytes at disk byte offset `off` with up to
 * IN_FLIGHT requests at once and adds the elapsed TSC ticks. */
static bool transfer_chunk(uint32_t type, uint8_t *buf, uint64_t off, uint64_t len, uint64_t *ticks,
			   uint64_t *requests, const char **why)
{
	uint64_t start = rdtsc();
	int slot = 0;
	for (uint64_t o = 0; o < len; o += REQUEST_BYTES, slot++) {
		uint32_t l = request_len(o, len);
		if (!submit(&slots[slot], type, (off + o) / 512, buf + o, l)) {
			*why = "request does not fit the queue";
			return false;
		}
		(*requests)++;
	}
	virtq_kick(&queue);
	bool ok = wait_all(why);
	*ticks += rdtsc() - start;
	return ok;
}

/* fill_seed copies the seed page over the whole buffer: 4 KiB -> 8 ->
 * 16 ... each doubling a single rep movsq. */
static void fill_seed(uint8_t *buf, uint64_t len)
{
	memcpy(buf, seed_page, PAGE_SIZE);
	for (uint64_t have = PAGE_SIZE; have < len;) {
		uint64_t n = have < len - have ? have : len - have;
		memcpy(buf + have, buf, n);
		have += n;
	}
}

/* stamp_pages writes each page's stamp for disk bytes [off, off+len) and
 * returns the sum of those bytes: per page, the seed's sum with its first
 * qword replaced by the stamp. */
static uint64_t stamp_pages(uint8_t *buf, uint64_t off, uint64_t len)
{
	uint64_t sum = 0;
	for (uint64_t p = 0; p < len; p += PAGE_SIZE) {
		uint64_t stamp = (off + p) ^ 0x6775727565756d00ull;
		*(uint64_t *)(buf + p) = stamp;
		sum += seed_sum - seed_page[0] + stamp;
	}
	return sum;
}

static void clear_stamps(uint8_t *buf, uint64_t len)
{
	for (uint64_t p = 0; p < len; p += PAGE_SIZE)
		*(uint64_t *)(buf + p) = 0;
}

/* sum_qwords adds up len bytes (a multiple of 64) as 64-bit words. */
static uint64_t sum_qwords(const uint8_t *buf, uint64_t len)
{
	const uint64_t *q = (const uint64_t *)buf;
	uint64_t sum = 0;
	for (uint64_t i = 0; i < len / 8; i += 8)
		sum += q[i] + q[i + 1] + q[i + 2] + q[i + 3] + q[i + 4] + q[i + 5] + q[i + 6] + q[i + 7];
	return sum;
}

static uint64_t mb_per_s(uint64_t bytes, uint64_t ticks)
{
	return ticks ? bytes * tsc_khz / ticks / 1000 : 0;
}

enum result blk_selftest(void)
{
	if (!blk_init()) {
		kprintf("selftest blk: skip no device\n");
		return RESULT_SKIP;
	}
	bool ro = virtio_has(&dev, VIRTIO_BLK_F_RO);
	uint64_t capacity = capacity_sectors() * 512;
	uint64_t total = config.blk_mib << 20;
	if (total > capacity)
		total = capacity & ~(uint64_t)(PAGE_SIZE - 1);
	if (total == 0) {
		kprintf("selftest blk: fail disk too small (%lu bytes)\n", capacity);
		return RESULT_FAIL;
	}

	for (int i = 0; i < 512; i++)
		seed_page[i] = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
	seed_sum = sum_qwords((const uint8_t *)seed_page, PAGE_SIZE);

	uint64_t buf_len = total < CHUNK_BYTES ? total : CHUNK_BYTES;
	uint8_t *buf = alloc_buffer(buf_len);
	fill_seed(buf, buf_len);
	const char *why = "";
	uint64_t wsum = 0, rsum = 0, wticks = 0, rticks = 0, wreq = 0, rreq = 0;

	if (!ro) {
		for (uint64_t off = 0; off < total; off += CHUNK_BYTES) {
			uint64_t len = total - off < CHUNK_BYTES ? total - off : CHUNK_BYTES;
			wsum += stamp_pages(buf, off, len);
			if (!transfer_chunk(VIRTIO_BLK_T_OUT, buf, off, len, &wticks, &wreq, &why)) {
				kprintf("selftest blk: fail write at %lu: %s\n", off, why);
				return RESULT_FAIL;
			}
		}
	}
	const char *flush = "none";
	if (virtio_has(&dev, VIRTIO_BLK_F_FLUSH)) {
		if (!submit(&slots[IN_FLIGHT], VIRTIO_BLK_T_FLUSH, 0, NULL, 0))
			fatal("virtio-blk queue full");
		virtq_kick(&queue);
		if (!wait_all(&why)) {
			kprintf("selftest blk: fail flush: %s\n", why);
			return RESULT_FAIL;
		}
		flush = "ok";
	}
	for (uint64_t off = 0; off < total; off += CHUNK_BYTES) {
		uint64_t len = total - off < CHUNK_BYTES ? total - off : CHUNK_BYTES;
		clear_stamps(buf, len); /* stale data must not pass for good data */
		if (!transfer_chunk(VIRTIO_BLK_T_IN, buf, off, len, &rticks, &rreq, &why)) {
			kprintf("selftest blk: fail read at %lu: %s\n", off, why);
			return RESULT_FAIL;
		}
		rsum += sum_qwords(buf, len);
	}

	/* GET_ID: the device's serial, up to 20 bytes, not NUL-terminated if full. */
	char *id = (char *)buf;
	memset(id, 0, 21);
	const char *id_state = "none";
	if (submit(&slots[IN_FLIGHT], VIRTIO_BLK_T_GET_ID, 0, id, 20)) {
		virtq_kick(&queue);
		if (wait_all(&why)) {
			for (int i = 0; i < 20; i++)
				if (id[i] && (id[i] < 0x21 || id[i] > 0x7e))
					id[i] = '_';
			id_state = id[0] ? id : "empty";
		} else {
			id_state = "unsupported";
		}
	}

	if (ro) {
		kprintf("selftest blk: ok read-only disk, capacity %lu bytes, read %lu bytes in %lu requests %lu ms %lu MB/s, "
			"sum 0x%lx, flush %s, id %s\n",
			capacity, total, rreq, tsc_to_ms(rticks), mb_per_s(total, rticks), rsum, flush, id_state);
		return RESULT_OK;
	}
	if (wsum != rsum) {
		kprintf("selftest blk: fail checksum mismatch wrote 0x%lx read 0x%lx over %lu bytes\n", wsum, rsum, total);
		return RESULT_FAIL;
	}
	kprintf("selftest blk: ok capacity %lu bytes, wrote %lu bytes in %lu requests %lu ms %lu MB/s, "
		"read %lu bytes in %lu requests %lu ms %lu MB/s, sum 0x%lx, flush %s, id %s\n",
		capacity, total, wreq, tsc_to_ms(wticks), mb_per_s(total, wticks), total, rreq, tsc_to_ms(rticks),
		mb_per_s(total, rticks), rsum, flush, id_state);
	return RESULT_OK;
}

/* ---- disk commands: pattern writes and an IOPS meter ---- */

#define PATTERN_MULT 0x9e3779b97f4a7c15ull
#define IOPS_BYTES 4096
#define IOPS_SPAN (64ull << 20) /* reads land in the first 64 MiB */

static uint8_t *cmd_buf; /* CHUNK_BYTES, allocated on first use */

/* blk_write_pattern writes `count` sectors from `sector`, then flushes.
 * Each 64-bit word holds its own disk byte offset XOR seed * PATTERN_MULT,
 * so the host can compute every byte and misplaced data shows. */
bool blk_write_pattern(uint64_t sector, uint64_t count, uint64_t seed, const char **why)
{
	if (blk_state <= 0) {
		*why = "no device";
		return false;
	}
	if (!cmd_buf)
		cmd_buf = alloc_buffer(CHUNK_BYTES);
	uint64_t key = seed * PATTERN_MULT, off = sector * 512, total = count * 512, ticks = 0, reqs = 0;
	for (uint64_t done = 0; done < total;) {
		uint64_t len = total - done < CHUNK_BYTES ? total - done : CHUNK_BYTES;
		uint64_t *q = (uint64_t *)cmd_buf;
		for (uint64_t i = 0; i < len / 8; i++)
			q[i] = (off + done + 8 * i) ^ key;
		if (!transfer_chunk(VIRTIO_BLK_T_OUT, cmd_buf, off + done, len, &ticks, &reqs, why))
			return false;
		done += len;
	}
	if (!submit(&slots[IN_FLIGHT], VIRTIO_BLK_T_FLUSH, 0, NULL, 0)) {
		*why = "queue full";
		return false;
	}
	virtq_kick(&queue);
	return wait_all(why);
}

/* A tiny generator for read offsets: xorshift64. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t next_random(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static bool submit_random(struct blk_slot *s, bool write, uint8_t *buf, uint64_t blocks)
{
	uint64_t block = next_random() % blocks;
	return submit(s, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, block * (IOPS_BYTES / 512), buf, IOPS_BYTES);
}

/* blk_measure_iops keeps IN_FLIGHT random 4 KiB reads (or writes) going
 * for `seconds` and counts those that complete in that time. A request is resubmitted
 * as soon as it completes, so the count is what the device (and its I/O
 * limit) allows, not what the guest waits for. */
bool blk_measure_iops(uint64_t seconds, bool write, uint64_t *ops, const char **why)
{
	*ops = 0;
	if (blk_state <= 0) {
		*why = "no device";
		return false;
	}
	uint64_t span = capacity_sectors() * 512;
	if (span > IOPS_SPAN)
		span = IOPS_SPAN;
	uint64_t blocks = span / IOPS_BYTES;
	if (blocks == 0) {
		*why = "disk smaller than 4 KiB";
		return false;
	}
	if (!cmd_buf)
		cmd_buf = alloc_buffer(CHUNK_BYTES);
	uint64_t deadline = rdtsc() + ms_to_tsc(seconds * 1000);
	for (int i = 0; i < IN_FLIGHT; i++)
		if (!submit_random(&slots[i], write, cmd_buf + i * IOPS_BYTES, blocks)) {
			*why = "queue full";
			return false;
		}
	virtq_kick(&queue);
	bool ok = true;
	uint64_t give_up = deadline + ms_to_tsc(REQUEST_TIMEOUT_MS);
	for (;;) {
		cli();
		(void)take_pending(VEC_BLK_QUEUE);
		bool resubmitted = false;
		struct blk_slot *s;
		uint64_t now = rdtsc();
		while ((s = virtq_get_used(&queue, NULL)) != NULL) {
			s->busy = false;
			if (s->status != 0) {
				ok = false;
				*why = s->status == 2 ? "unsupported request" : "I/O error";
				continue;
			}
			if (now > deadline)
				continue; /* finished after the window: not counted */
			(*ops)++;
			if (ok) {
				int i = (int)(s - slots);
				resubmitted |= submit_random(s, write, cmd_buf + i * IOPS_BYTES, blocks);
			}
		}
		if (resubmitted)
			virtq_kick(&queue);
		bool busy = false;
		for (int i = 0; i < IN_FLIGHT; i++)
			busy |= slots[i].busy;
		if (!busy)
			return ok;
		if (now >= give_up) {
			*why = "timeout";
			return false;
		}
		wait_for_interrupt_until(now < deadline ? deadline : give_up);
	}
}

/* blkiops_selftest: "blkiops=DISK:SECONDS[:r|w|rw]" on the command line:
 * random reads, writes, or reads then writes (one line each). */
enum result blkiops_selftest(void)
{
	if (config.blkiops_s == 0) {
		kprintf("selftest blkiops: skip no blkiops= given\n");
		return RESULT_SKIP;
	}
	if (!blk_init()) {
		kprintf("selftest blkiops: skip no device\n");
		return RESULT_SKIP;
	}
	for (int w = 0; w < 2; w++) {
		if (!(config.blkiops_modes & (1u << w)))
			continue;
		const char *mode = w ? "write" : "read";
		uint64_t ops;
		const char *why = "";
		if (!blk_measure_iops(config.blkiops_s, w, &ops, &why)) {
			kprintf("selftest blkiops: fail %s after %lu ops mode=%s\n", why, ops, mode);
			return RESULT_FAIL;
		}
		kprintf("selftest blkiops: ok ops=%lu seconds=%lu mode=%s\n", ops, config.blkiops_s, mode);
	}
	return RESULT_OK;
}
