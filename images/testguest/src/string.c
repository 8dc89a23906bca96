/*
 * string.c - memory and string routines.
 *
 * Under an instruction emulator every instruction costs about a
 * microsecond, but a "rep movs" or "rep stos" is decoded once however many
 * elements it moves, so bulk copies and fills use the string instructions,
 * never byte loops. The emulator still pays per element, so 8-byte elements
 * (movsq/stosq) are used whenever addresses and length allow: measured
 * under KVM's emulator, 4 MiB take about 1.5 s with stosb and an eighth of
 * that with stosq. The compiler also calls memcpy/memset for struct
 * copies, so these names must exist.
 */
#include "testguest.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;
	if ((((uintptr_t)dst | (uintptr_t)src | n) & 7) == 0) {
		n /= 8;
		__asm__ volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	} else {
		__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	if ((((uintptr_t)dst | n) & 7) == 0) {
		uint64_t v = 0x0101010101010101ull * (uint8_t)c;
		n /= 8;
		__asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(v) : "memory");
	} else {
		__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	}
	return dst;
}

/* memcmp uses "repe cmpsb": compare until the first difference. */
int memcmp(const void *a, const void *b, size_t n)
{
	if (n == 0)
		return 0;
	const uint8_t *pa = a, *pb = b;
	__asm__ volatile("repe cmpsb" : "+D"(pb), "+S"(pa), "+c"(n) : : "memory", "cc");
	/* After the loop both pointers are one past the last compared byte. */
	if (pa[-1] == pb[-1])
		return 0;
	return pa[-1] < pb[-1] ? -1 : 1;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

bool str_starts(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return false;
	return true;
}

/* parse_u64 reads decimal digits; it fails when there are none. */
bool parse_u64(const char *s, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9')
		v = v * 10 + (uint64_t)(*p++ - '0');
	if (end)
		*end = p;
	*out = v;
	return p != s;
}

/* parse_ipv4 reads A.B.C.D into a host-order 32-bit address. */
bool parse_ipv4(const char *s, const char **end, uint32_t *ip)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t part;
		if (!parse_u64(s, &s, &part) || part > 255)
			return false;
		v = v << 8 | (uint32_t)part;
		if (i < 3) {
			if (*s != '.')
				return false;
			s++;
		}
	}
	*ip = v;
	if (end)
		*end = s;
	return true;
}
