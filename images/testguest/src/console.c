/*
 * console.c - output on the COM1 serial port, the guest's only console.
 *
 * Every byte written to the UART's data register is a port write the VMM
 * must emulate, i.e. one VM exit. So lines are formatted into a buffer and
 * sent with one "rep outsb", which KVM forwards to the VMM as a single
 * string-I/O exit carrying the whole line (kvm_run.io.count bytes). The
 * UART of a VMM accepts bytes at once, so the guest does not poll the line
 * status register between bytes (that would double the exits).
 */
#include "testguest.h"
#include "x86.h"

#define COM1 0x3f8

static volatile uint32_t console_lock;

void console_init(void)
{
	outb(COM1 + 1, 0x00); /* no UART interrupts: output only */
	outb(COM1 + 3, 0x80); /* DLAB on to set the divisor */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8 data bits, no parity, 1 stop bit */
}

/* The lock is a plain test-and-set on xchg, which is atomic on x86. It
 * keeps lines from different vCPUs (exception reports) whole. */
static void lock(void)
{
	uint32_t one = 1;
	for (;;) {
		uint32_t v = one;
		__asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(console_lock) : : "memory");
		if (v == 0)
			return;
	}
}

static void unlock(void)
{
	barrier();
	console_lock = 0;
}

/* console_getc reads one received byte if the line status register says
 * one is waiting (bit 0, data ready). Input is polled, not interrupt
 * driven: only the blk command mode reads it, a few times a second. */
int console_getc(void)
{
	if (!(inb(COM1 + 5) & 1))
		return -1;
	return inb(COM1);
}

static void write_bytes(const char *s, size_t n)
{
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"((uint16_t)COM1) : "memory");
}

/* Appends one character if there is room; always counts it. */
struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void put_number(struct out *o, uint64_t v, unsigned base, int width, char pad)
{
	char digits[24];
	int n = 0;
	do {
		unsigned d = (unsigned)(v % base);
		digits[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	while (width-- > n)
		put(o, pad);
	while (n)
		put(o, digits[--n]);
}

/*
 * kvsnprintf understands %s %c %d %u %x %%, the length modifiers l and ll
 * and a field width with optional 0 padding (%02x). That is all the guest
 * prints.
 */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = {buf, size, 0};
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, longs = 0;
		if (*fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			int n = 0;
			for (; *s; s++, n++)
				put(&o, *s);
			while (n++ < width)
				put(&o, ' ');
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
			if (v < 0) {
				put(&o, '-');
				v = -v;
			}
			put_number(&o, (uint64_t)v, 10, width, pad);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			put_number(&o, v, *fmt == 'u' ? 10 : 16, width, pad);
			break;
		}
		case '%':
			put(&o, '%');
			break;
		default:
			put(&o, '?');
			if (!*fmt)
				fmt--;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = kvsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

static void vprint(const char *fmt, va_list ap)
{
	char line[256];
	int n = kvsnprintf(line, sizeof line, fmt, ap);
	if (n > (int)sizeof line - 1)
		n = sizeof line - 1;
	lock();
	write_bytes(line, (size_t)n);
	unlock();
}

void kprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
}

/* fatal reports "gureum-testguest: error <what>" and powers the VM off. */
void fatal(const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	kprintf("gureum-testguest: error %s\n", what);
	acpi_poweroff();
}
