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

/* "A.B.C.D" of a host-order address; out should hold 16 bytes. */
void format_ip(char *out, size_t size, uint32_t ip);

/* What peer.c uses: serving while waiting, ARP, ping (net.c). */
bool net_serve_until(uint64_t deadline, bool (*done)(void));
bool net_resolve(uint32_t ip, int tries, uint8_t mac_out[6]);
bool net_ping(const uint8_t next_mac[6], uint32_t ip);

/* tcp.c */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_WINDOW 8192 /* the receive window both ends of ours offer */
#define HTTP_PORT 80     /* the guest serves on it, and the peer probe fetches from it */

void tcp_input(const uint8_t src_mac[6], uint32_t src_ip, const uint8_t *seg, uint16_t len);
void tcp_send(const uint8_t mac[6], uint32_t ip, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
	      uint8_t flags, const void *data, uint16_t len);
uint64_t tcp_timers(void); /* runs due retransmissions; returns the next deadline (TSC) or 0 */
void tcp_burn_done(void);  /* the APs finished a burn: reply to waiting requests */
bool tcp_idle(void);       /* no connection open: all responses acknowledged */
extern uint32_t net_ip;

/* peer.c: the client side. peer_tcp_input takes a segment addressed to
 * the probe's own port and returns false for any other. */
bool peer_tcp_input(uint32_t src_ip, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
		    const uint8_t *data, uint16_t dlen);

#endif
