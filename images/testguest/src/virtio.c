/*
 * virtio.c - the virtio-pci 1.x transport and split virtqueues.
 *
 * Finding the registers: a modern virtio-pci device lists, in its PCI
 * capability list, vendor-specific capabilities (ID 0x09) that each say
 * "structure of type T lives in BAR b at offset o, length l":
 *   1 common configuration: feature negotiation, status, queue setup
 *   2 notifications: where to write a queue's index to kick it
 *   3 ISR status (only for INTx; unused with MSI-X)
 *   4 device-specific configuration (disk capacity, MAC address ...)
 * and an MSI-X capability (ID 0x11) naming the BAR that holds the MSI-X
 * table: one 16-byte entry (address, data, mask) per interrupt vector.
 *
 * Bringing a device up follows the status handshake of the virtio spec
 * (section 3.1): reset, ACKNOWLEDGE, DRIVER, negotiate features,
 * FEATURES_OK (and check the device kept it), set up queues, DRIVER_OK.
 */
#include "virtio.h"
#include "x86.h"

/* Common configuration register offsets (virtio 1.x, 4.1.4.3). */
#define COMMON_DEVICE_FEATURE_SELECT 0
#define COMMON_DEVICE_FEATURE 4
#define COMMON_DRIVER_FEATURE_SELECT 8
#define COMMON_DRIVER_FEATURE 12
#define COMMON_MSIX_CONFIG 16
#define COMMON_NUM_QUEUES 18
#define COMMON_DEVICE_STATUS 20
#define COMMON_QUEUE_SELECT 22
#define COMMON_QUEUE_SIZE 24
#define COMMON_QUEUE_MSIX_VECTOR 26
#define COMMON_QUEUE_ENABLE 28
#define COMMON_QUEUE_NOTIFY_OFF 30
#define COMMON_QUEUE_DESC 32
#define COMMON_QUEUE_DRIVER 40
#define COMMON_QUEUE_DEVICE 48

/* device_status bits */
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_FAILED 128

#define NO_VECTOR 0xffff

static uint64_t cap_address(struct virtio_device *vd, uint8_t cap)
{
	uint8_t bar = pci_read8(&vd->pci, (uint16_t)(cap + 4));
	uint32_t offset = pci_read32(&vd->pci, (uint16_t)(cap + 8));
	uint64_t base = pci_bar_address(&vd->pci, bar);
	if (base == 0)
		return 0;
	return base + offset;
}

/* virtio_open finds the first device of `type`, enables it on the bus and
 * locates its register blocks. False if there is none or it is not a
 * usable modern device. */
bool virtio_open(struct virtio_device *vd, uint16_t type) { return virtio_open_nth(vd, type, 0); }

/* virtio_open_nth is virtio_open for the n-th device of `type` (from 0). */
bool virtio_open_nth(struct virtio_device *vd, uint16_t type, uint32_t n)
{
	memset(vd, 0, sizeof *vd);
	if (!pci_find_nth(type, n, &vd->pci))
		return false;
	pci_enable(&vd->pci);
	for (uint8_t cap = pci_find_capability(&vd->pci, 0x09, 0); cap;
	     cap = pci_find_capability(&vd->pci, 0x09, cap)) {
		uint8_t cfg_type = pci_read8(&vd->pci, (uint16_t)(cap + 3));
		switch (cfg_type) {
		case 1:
			if (!vd->common)
				vd->common = cap_address(vd, cap);
			break;
		case 2:
			if (!vd->notify_base) {
				vd->notify_base = cap_address(vd, cap);
				vd->notify_multiplier = pci_read32(&vd->pci, (uint16_t)(cap + 16));
			}
			break;
		case 3:
			if (!vd->isr)
				vd->isr = cap_address(vd, cap);
			break;
		case 4:
			if (!vd->device_cfg)
				vd->device_cfg = cap_address(vd, cap);
			break;
		}
	}
	uint8_t msix = pci_find_capability(&vd->pci, 0x11, 0);
	if (msix) {
		uint16_t control = pci_read16(&vd->pci, (uint16_t)(msix + 2));
		uint32_t table = pci_read32(&vd->pci, (uint16_t)(msix + 4));
		uint64_t base = pci_bar_address(&vd->pci, table & 7);
		if (base) {
			vd->msix_table = base + (table & ~7u);
			vd->msix_size = (uint16_t)((control & 0x7ff) + 1);
			/* Enable MSI-X (bit 15) and clear the function mask (bit 14). */
			pci_write16(&vd->pci, (uint16_t)(msix + 2), (uint16_t)((control | 0x8000) & ~0x4000));
		}
	}
	if (!vd->common || !vd->notify_base || !vd->device_cfg || !vd->msix_table) {
		kprintf("gureum-testguest: virtio %02x:%02x.%u lacks a modern register block or MSI-X\n", vd->pci.bus,
			vd->pci.dev, vd->pci.fn);
		return false;
	}
	return true;
}

static uint8_t read_status(struct virtio_device *vd) { return mmio_read8(vd->common + COMMON_DEVICE_STATUS); }
static void write_status(struct virtio_device *vd, uint8_t s) { mmio_write8(vd->common + COMMON_DEVICE_STATUS, s); }

/* virtio_negotiate resets the device and agrees on features: those the
 * device offers and the driver wants. VERSION_1 is required. */
bool virtio_negotiate(struct virtio_device *vd, uint64_t wanted)
{
	write_status(vd, 0);
	for (int i = 0; i < 100000 && read_status(vd) != 0; i++)
		;
	write_status(vd, STATUS_ACKNOWLEDGE);
	write_status(vd, STATUS_ACKNOWLEDGE | STATUS_DRIVER);

	uint64_t offered = 0;
	for (uint32_t half = 0; half < 2; half++) {
		mmio_write32(vd->common + COMMON_DEVICE_FEATURE_SELECT, half);
		offered |= (uint64_t)mmio_read32(vd->common + COMMON_DEVICE_FEATURE) << (32 * half);
	}
	wanted |= 1ull << VIRTIO_F_VERSION_1;
	vd->features = offered & wanted;
	if (!(vd->features & (1ull << VIRTIO_F_VERSION_1))) {
		write_status(vd, STATUS_FAILED);
		return false;
	}
	for (uint32_t half = 0; half < 2; half++) {
		mmio_write32(vd->common + COMMON_DRIVER_FEATURE_SELECT, half);
		mmio_write32(vd->common + COMMON_DRIVER_FEATURE, (uint32_t)(vd->features >> (32 * half)));
	}
	write_status(vd, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
	if (!(read_status(vd) & STATUS_FEATURES_OK)) {
		write_status(vd, STATUS_FAILED);
		return false;
	}
	return true;
}

bool virtio_has(const struct virtio_device *vd, int bit) { return vd->features & (1ull << bit); }

/* msix_route points MSI-X table entry `entry` at `vector` on the BSP.
 * An MSI is a memory write: address 0xfee00000 | destination APIC ID << 12
 * selects the CPU, data = vector selects the handler. */
static bool msix_route(struct virtio_device *vd, uint16_t entry, uint8_t vector)
{
	if (entry >= vd->msix_size)
		return false;
	uint64_t e = vd->msix_table + 16ull * entry;
	mmio_write32(e + 0, 0xfee00000u | bsp_apic_id << 12);
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector);
	mmio_write32(e + 12, 0); /* unmasked */
	return true;
}

/* virtio_set_config_vector routes configuration-change interrupts. The
 * device answers NO_VECTOR if it could not take the entry. */
bool virtio_set_config_vector(struct virtio_device *vd, uint16_t entry, uint8_t vector)
{
	if (!msix_route(vd, entry, vector))
		return false;
	mmio_write16(vd->common + COMMON_MSIX_CONFIG, entry);
	return mmio_read16(vd->common + COMMON_MSIX_CONFIG) == entry;
}

/*
 * virtio_setup_queue allocates and registers queue `index` with at most
 * max_size entries. A split virtqueue is three arrays in guest RAM: the
 * descriptor table, the available ring (driver -> device) and the used
 * ring (device -> driver). Their guest-physical addresses go into the
 * common configuration, then the queue is enabled.
 */
bool virtio_setup_queue(struct virtio_device *vd, struct virtq *q, uint16_t index, uint16_t max_size,
			uint16_t msix_entry, uint8_t vector)
{
	memset(q, 0, sizeof *q);
	if (index >= mmio_read16(vd->common + COMMON_NUM_QUEUES))
		return false;
	mmio_write16(vd->common + COMMON_QUEUE_SELECT, index);
	uint16_t device_max = mmio_read16(vd->common + COMMON_QUEUE_SIZE);
	if (device_max == 0)
		return false;
	uint16_t size = 1;
	while ((uint32_t)size * 2 <= device_max && (uint32_t)size * 2 <= max_size)
		size = (uint16_t)(size * 2);

	q->index = index;
	q->size = size;
	q->desc = alloc_pages(16u * size);
	q->avail = alloc_pages(6u + 2u * size);
	q->used = alloc_pages(6u + 8u * size);
	q->tokens = alloc_pages(sizeof(void *) * size);
	for (uint16_t i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->free_head = 0;
	q->free_count = size;
	q->last_used = 0;
	q->kicked = 0;
	q->event_idx = virtio_has(vd, VIRTIO_F_EVENT_IDX);
	q->quiet = false;

	mmio_write16(vd->common + COMMON_QUEUE_SIZE, size);
	mmio_write64(vd->common + COMMON_QUEUE_DESC, (uint64_t)q->desc);
	mmio_write64(vd->common + COMMON_QUEUE_DRIVER, (uint64_t)q->avail);
	mmio_write64(vd->common + COMMON_QUEUE_DEVICE, (uint64_t)q->used);
	if (!msix_route(vd, msix_entry, vector))
		return false;
	mmio_write16(vd->common + COMMON_QUEUE_MSIX_VECTOR, msix_entry);
	if (mmio_read16(vd->common + COMMON_QUEUE_MSIX_VECTOR) != msix_entry)
		return false;
	uint16_t notify_off = mmio_read16(vd->common + COMMON_QUEUE_NOTIFY_OFF);
	q->notify_addr = vd->notify_base + (uint64_t)notify_off * vd->notify_multiplier;
	mmio_write16(vd->common + COMMON_QUEUE_ENABLE, 1);
	return true;
}

/*
 * virtio_try_queue_size is a hook for the hostile mode (hostile.c): it
 * programs queue `index` with `size` entries and the rings of q, whatever
 * the size, asks the device to enable it, and returns whether the device
 * did (queue_enable reads back 1). *before and *after get queue_size as
 * the device reports it before the write (its maximum, right after a
 * reset) and after the attempt. A correct device refuses a size that is
 * not a power of two or exceeds its maximum.
 */
bool virtio_try_queue_size(struct virtio_device *vd, const struct virtq *q, uint16_t index, uint16_t size,
			   uint16_t *before, uint16_t *after)
{
	mmio_write16(vd->common + COMMON_QUEUE_SELECT, index);
	*before = mmio_read16(vd->common + COMMON_QUEUE_SIZE);
	mmio_write16(vd->common + COMMON_QUEUE_SIZE, size);
	mmio_write64(vd->common + COMMON_QUEUE_DESC, (uint64_t)q->desc);
	mmio_write64(vd->common + COMMON_QUEUE_DRIVER, (uint64_t)q->avail);
	mmio_write64(vd->common + COMMON_QUEUE_DEVICE, (uint64_t)q->used);
	mmio_write16(vd->common + COMMON_QUEUE_ENABLE, 1);
	*after = mmio_read16(vd->common + COMMON_QUEUE_SIZE);
	return mmio_read16(vd->common + COMMON_QUEUE_ENABLE) == 1;
}

/* virtio_driver_ok tells the device the driver is ready: it may now use
 * the queues and raise interrupts. */
void virtio_driver_ok(struct virtio_device *vd)
{
	write_status(vd, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/*
 * virtq_add offers one chain of n buffers (device-readable ones first,
 * then device-writable ones, as the spec requires) and returns its head
 * descriptor, or -1 if the queue lacks free descriptors. The device does
 * not look until virtq_kick. `token` comes back from virtq_get_used.
 */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, int n, void *token)
{
	if (n <= 0 || n > q->free_count)
		return -1;
	uint16_t head = q->free_head, i = head, last = head;
	for (int k = 0; k < n; k++) {
		struct virtq_desc *d = &q->desc[i];
		d->addr = (uint64_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (uint16_t)((bufs[k].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		last = i;
		i = d->next;
	}
	q->free_head = q->desc[last].next;
	q->free_count = (uint16_t)(q->free_count - n);
	q->tokens[head] = token;
	/* Publish: first the ring slot, then (after a barrier, so the device
	 * never sees the new index before the slot) the index. */
	q->avail->ring[q->avail->idx & (q->size - 1)] = head;
	barrier();
	q->avail->idx = (uint16_t)(q->avail->idx + 1);
	barrier();
	return head;
}

/* A full barrier: our stores before it are visible to the device (on
 * another CPU) before our loads after it. A locked read-modify-write is
 * one on x86, and every emulator has it. */
static inline void full_barrier(void) { __asm__ volatile("lock orl $0, (%%rsp)" ::: "memory", "cc"); }

/* need_event says whether moving an index from old to now passed the
 * other side's event index: it asked to hear once the index gets past
 * event (the formula of the virtio spec, 2.7.10, on 16-bit counters). */
static inline bool need_event(uint16_t event, uint16_t now, uint16_t old)
{
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

/*
 * virtq_kick notifies the device that the available ring has news: one
 * MMIO write of the queue index, i.e. one exit to the VMM. It is skipped
 * when the device said it needs none: with EVENT_IDX when the new entries
 * do not pass the avail_event index it published (it is still busy with
 * the ring, or has buffers enough), without it when it set
 * VIRTQ_USED_F_NO_NOTIFY. The barrier orders our index store before the
 * load of the device's hint; the device orders the other way, so one of
 * us always sees the other's news.
 */
void virtq_kick(struct virtq *q)
{
	uint16_t old = q->kicked, now = q->avail->idx;
	q->kicked = now;
	full_barrier();
	bool needed;
	if (q->event_idx) {
		/* avail_event follows the used ring's last element. */
		const volatile uint16_t *avail_event = (const volatile uint16_t *)(const void *)((const uint8_t *)q->used + 4 + 8u * q->size);
		uint16_t event = *avail_event;
		needed = need_event(event, now, old);
	} else {
		needed = !(*(volatile uint16_t *)&q->used->flags & VIRTQ_USED_F_NO_NOTIFY);
	}
	if (needed)
		mmio_write16(q->notify_addr, q->index);
}

/*
 * virtq_quiet tells the device not to interrupt for this queue: the
 * driver looks at its used ring when it needs to (a transmit queue whose
 * buffers are reclaimed at the next send, as Linux's virtio-net does).
 * With EVENT_IDX the driver's used_event is put half the index space
 * ahead (virtq_get_used keeps it there); without, the avail ring's
 * VIRTQ_AVAIL_F_NO_INTERRUPT flag asks the same.
 */
void virtq_quiet(struct virtq *q)
{
	q->quiet = true;
	q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	q->avail->ring[q->size] = (uint16_t)(q->last_used + 0x8000);
	barrier();
}

/*
 * virtq_get_used takes the next chain the device has finished with and
 * returns its token (NULL if none is waiting); *len gets the number of
 * bytes the device wrote. The chain's descriptors return to the free list.
 * The device's used entry is checked before use: a bad head is dropped.
 */
void *virtq_get_used(struct virtq *q, uint32_t *len)
{
	for (;;) {
		if (q->last_used == *(volatile uint16_t *)&q->used->idx) {
			/* With EVENT_IDX, used_event says which used index the
			 * driver wants an interrupt at: the next one, or (quiet)
			 * none for the next half of the index space. Then look
			 * again: the device may have used one more before it
			 * could see the new used_event, and will not interrupt
			 * for it. */
			q->avail->ring[q->size] = (uint16_t)(q->last_used + (q->quiet ? 0x8000 : 0));
			full_barrier();
			if (q->last_used == *(volatile uint16_t *)&q->used->idx)
				return NULL;
			continue;
		}
		barrier();
		struct virtq_used_elem e = q->used->ring[q->last_used & (q->size - 1)];
		q->last_used = (uint16_t)(q->last_used + 1);
		if (e.id >= q->size || q->tokens[e.id] == NULL)
			continue;
		void *token = q->tokens[e.id];
		q->tokens[e.id] = NULL;
		uint16_t i = (uint16_t)e.id, n = 1;
		while ((q->desc[i].flags & VIRTQ_DESC_F_NEXT) && n < q->size) {
			i = q->desc[i].next;
			n++;
		}
		q->desc[i].next = q->free_head;
		q->free_head = (uint16_t)e.id;
		q->free_count = (uint16_t)(q->free_count + n);
		if (len)
			*len = e.len;
		return token;
	}
}
