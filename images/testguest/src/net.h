/*
 * net.h - the guest's minimal network stack, shared by net.c (virtio-net,
 * Ethernet, ARP, IPv4, ICMP) and tcp.c (TCP, just enough for HTTP/1.0).
 *
 * Addresses are kept in host byte order in variables and converted when
 * written to or read from packets, which are big-endian ("network order").
 */
#ifndef TESTGUEST_NET_H
#define TESTGUEST_NET_H

#include "testguest.h"

#define ETH_HEADER 14
#define IP_HEADER 20
#define IP_PROTO_ICMP 1
#define IP_PROTO_TCP 6

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Counters the self test reports. */
struct net_stats {
	uint32_t served_icmp, served_http;
};
extern struct net_stats net_stats;

/* Internet checksum helpers: a 32-bit running sum of 16-bit words, folded
 * and complemented at the end. */
uint32_t checksum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t checksum_finish(uint32_t sum);

/*
 * Sending an IP packet: net_ip_payload() reserves a transmit buffer and
 * returns where the IP payload goes (NULL if none is free); the caller
 * writes its header and data there and calls net_ip_send. For TCP,
 * net_ip_send fills in the checksum (in software, or by asking the device
 * to, with NEEDS_CSUM, when the device offered VIRTIO_NET_F_CSUM).
 */
uint8_t *net_ip_payload(void);
void net_ip_send(uint8_t *payload, const uint8_t dst_mac[6], uint32_t dst_ip, uint8_t proto, uint16_t len);

/* tcp.c */
void tcp_input(const uint8_t src_mac[6], uint32_t src_ip, const uint8_t *seg, uint16_t len);
uint64_t tcp_timers(void); /* runs due retransmissions; returns the next deadline (TSC) or 0 */
void tcp_burn_done(void);
bool tcp_idle(void);       /* no connection open: all responses acknowledged */  /* the APs finished a burn: reply to waiting requests */
extern uint32_t net_ip;

#endif
