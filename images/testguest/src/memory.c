/*
 * memory.c - handing out guest RAM for virtqueues and I/O buffers.
 *
 * The guest identity-maps its memory (virtual address = physical address),
 * so a pointer can be given to a device as is: devices see guest-physical
 * addresses. Allocations are never freed; the guest sets everything up
 * once. The pool runs from the end of the loaded image to the top of the
 * first RAM region below the 32-bit hole.
 */
#include "testguest.h"

extern char _end[];

static uint64_t next_free, ram_top;

void memory_init(uint64_t top)
{
	next_free = ((uint64_t)_end + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
	ram_top = top;
}

/* alloc_buffer returns page-aligned memory with undefined contents (the
 * caller overwrites it all) or fails the guest. */
void *alloc_buffer(size_t bytes)
{
	uint64_t size = (bytes + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
	if (next_free + size > ram_top)
		fatal("out of memory (want %lu bytes, %lu free)", (uint64_t)bytes, ram_top - next_free);
	void *p = (void *)next_free;
	next_free += size;
	return p;
}

/* alloc_pages returns zeroed, page-aligned memory or fails the guest. */
void *alloc_pages(size_t bytes)
{
	void *p = alloc_buffer(bytes);
	memset(p, 0, bytes);
	return p;
}

uint64_t memory_free_bytes(void)
{
	return ram_top > next_free ? ram_top - next_free : 0;
}
