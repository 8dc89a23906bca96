/*
 * virtio.h - the guest side of virtio 1.x over PCI, with split virtqueues.
 *
 * A virtio device and its driver share memory: queues of buffer
 * descriptors in guest RAM. The driver puts buffers in, "kicks" the device
 * with a write to its notify register, the device uses them and signals
 * back with an interrupt (MSI-X here). Configuration is done through a few
 * register blocks in the device's BARs, each found through a PCI
 * vendor-specific capability (see virtio.c).
 */
#ifndef TESTGUEST_VIRTIO_H
#define TESTGUEST_VIRTIO_H

#include "testguest.h"

/* Feature bits common to all devices. */
#define VIRTIO_F_EVENT_IDX 29 /* used_event / avail_event, see virtq_kick */
#define VIRTIO_F_VERSION_1 32

/* One descriptor: a buffer in guest-physical memory. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags; /* VIRTQ_DESC_F_* */
	uint16_t next;  /* next descriptor in the chain, if F_NEXT */
};
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2 /* the device writes this buffer (else reads it) */

/* The driver's ("available") ring: heads of chains offered to the device. */
struct virtq_avail {
	uint16_t flags; /* VIRTQ_AVAIL_F_NO_INTERRUPT */
	uint16_t idx; /* where the driver will put the next entry; free-running */
	uint16_t ring[]; /* then, with EVENT_IDX: used_event */
};
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* The device's ("used") ring: chains it has finished with. */
struct virtq_used_elem {
	uint32_t id;  /* head descriptor of the chain */
	uint32_t len; /* bytes the device wrote into the chain */
};
struct virtq_used {
	uint16_t flags; /* VIRTQ_USED_F_NO_NOTIFY */
	uint16_t idx;
	struct virtq_used_elem ring[]; /* then, with EVENT_IDX: avail_event */
};
#define VIRTQ_USED_F_NO_NOTIFY 1

/* One buffer of a chain, as the driver describes it. */
struct virtq_buf {
	void *addr;
	uint32_t len;
	bool device_writes;
};

struct virtq {
	uint16_t index, size;
	struct virtq_desc *desc;
	struct virtq_avail *avail;
	struct virtq_used *used;
	uint16_t free_head, free_count;
	uint16_t last_used; /* how far the driver has consumed the used ring */
	uint16_t kicked;    /* avail->idx at the last virtq_kick */
	bool event_idx;     /* VIRTIO_F_EVENT_IDX negotiated */
	bool quiet;         /* the driver wants no interrupts (virtq_quiet) */
	uint64_t notify_addr;
	void **tokens; /* per head descriptor: the caller's cookie */
};

struct virtio_device {
	struct pci_device pci;
	uint64_t common;      /* common configuration registers */
	uint64_t notify_base; /* notification area */
	uint32_t notify_multiplier;
	uint64_t isr;
	uint64_t device_cfg; /* device-specific configuration */
	uint64_t msix_table;
	uint16_t msix_size;
	uint64_t features; /* negotiated */
};

bool virtio_open(struct virtio_device *vd, uint16_t type);
bool virtio_open_nth(struct virtio_device *vd, uint16_t type, uint32_t n);
bool virtio_negotiate(struct virtio_device *vd, uint64_t wanted);
bool virtio_setup_queue(struct virtio_device *vd, struct virtq *q, uint16_t index, uint16_t max_size,
			uint16_t msix_entry, uint8_t vector);
bool virtio_set_config_vector(struct virtio_device *vd, uint16_t msix_entry, uint8_t vector);
void virtio_driver_ok(struct virtio_device *vd);
/* Hostile mode only: program a queue with any size; true if the device enabled it. */
bool virtio_try_queue_size(struct virtio_device *vd, const struct virtq *q, uint16_t index, uint16_t size,
			   uint16_t *before, uint16_t *after);
bool virtio_has(const struct virtio_device *vd, int bit);

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, int n, void *token);
void virtq_kick(struct virtq *q);
void virtq_quiet(struct virtq *q);
void *virtq_get_used(struct virtq *q, uint32_t *len);

#endif
