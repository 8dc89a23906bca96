/*
 * net.c - the virtio-net driver, Ethernet, ARP, IPv4 and ICMP echo, and
 * the "net" self test and "serve" mode. peer.c builds the peer probe on
 * the pieces exported here (net_serve_until, net_resolve, net_ping).
 *
 * virtio-net has a receive queue (0) and a transmit queue (1). Every
 * packet on either is preceded by a 12-byte virtio_net_hdr (the VERSION_1
 * layout), which carries checksum-offload requests: with
 * VIRTIO_NET_F_CSUM negotiated, the guest may send a TCP segment whose
 * checksum field holds only the pseudo-header sum, flag it NEEDS_CSUM and
 * say where the checksum starts; the device (in the end, the host kernel)
 * completes it. GUEST_CSUM lets the device hand us packets whose checksum
 * it has not computed; the guest never verifies received checksums (a
 * virtual link does not corrupt), so it can always accept that.
 *
 * The guest posts receive buffers of 2 KiB (header + a full 1514-byte
 * frame) and keeps a pool of 2 KiB transmit buffers.
 */
#include "net.h"
#include "virtio.h"
#include "x86.h"

#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC 5

#define NET_HDR 12
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define BUF_SIZE 2048
#define RX_BUFFERS 32
#define TX_BUFFERS 32

#define ETH_TYPE_IPV4 0x0800
#define ETH_TYPE_ARP 0x0806

struct virtio_net_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
};

static struct virtio_device dev;
static struct virtq rxq, txq;
static uint8_t *tx_free[TX_BUFFERS];
static int tx_free_count;
static uint8_t mac[6];
static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

uint32_t net_ip;
struct net_stats net_stats;
static uint16_t ip_id;

/*
 * The neighbour table: addresses the guest itself sends to (the gateway,
 * the peers), each with its MAC once an ARP packet from it told us. An
 * entry is made when the guest first asks (net_resolve) and kept for
 * ever: MACs here do not change while the guest runs. Anyone else is
 * answered at the MAC its frame came from and needs no entry.
 */
#define NEIGHBOURS 8

struct neighbour {
	uint32_t ip;
	uint8_t mac[6];
	bool known;
};
static struct neighbour neighbours[NEIGHBOURS];
static int neighbour_count;

/* The echo request net_ping waits for: its sender and sequence number. */
static uint32_t ping_dst;
static uint16_t ping_seq;
static bool ping_replied;

/* ---- checksums ---- */

uint32_t checksum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (; len > 1; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

uint16_t checksum_finish(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ---- the virtio-net device ---- */

static bool post_rx(uint8_t *buf)
{
	struct virtq_buf b = {buf, BUF_SIZE, true};
	return virtq_add(&rxq, &b, 1, buf) >= 0;
}

static int net_state; /* 0 not tried, 1 ready, -1 absent */

/* net_init finds and starts the first virtio-net device, once. */
bool net_init(void)
{
	if (net_state)
		return net_state > 0;
	net_state = -1;
	if (!virtio_open(&dev, 1))
		return false;
	uint64_t want = 1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_GUEST_CSUM | 1ull << VIRTIO_NET_F_MAC |
			1ull << VIRTIO_F_EVENT_IDX;
	if (!virtio_negotiate(&dev, want))
		fatal("virtio-net feature negotiation failed");
	if (virtio_has(&dev, VIRTIO_NET_F_MAC)) {
		for (int i = 0; i < 6; i++)
			mac[i] = mmio_read8(dev.device_cfg + (uint64_t)i);
	} else {
		/* A locally administered address of our own. */
		const uint8_t own[6] = {0x02, 0x67, 0x75, 0x72, 0x65, 0x75};
		memcpy(mac, own, 6);
	}
	if (!virtio_set_config_vector(&dev, 0, VEC_NET_CONFIG) ||
	    !virtio_setup_queue(&dev, &rxq, 0, RX_BUFFERS, 1, VEC_NET_RX) ||
	    !virtio_setup_queue(&dev, &txq, 1, TX_BUFFERS, 2, VEC_NET_TX))
		fatal("virtio-net queue setup failed");
	/* Sent buffers are reclaimed at the next send (tx_frame), so their
	 * completion needs no interrupt. */
	virtq_quiet(&txq);
	uint8_t *bufs = alloc_pages((size_t)BUF_SIZE * (rxq.size + TX_BUFFERS));
	for (int i = 0; i < rxq.size; i++)
		post_rx(bufs + (size_t)i * BUF_SIZE);
	for (int i = 0; i < TX_BUFFERS; i++)
		tx_free[tx_free_count++] = bufs + (size_t)(rxq.size + i) * BUF_SIZE;
	virtio_driver_ok(&dev);
	virtq_kick(&rxq);
	net_ip = config.ip;
	net_state = 1;
	return true;
}

static void reclaim_tx(void)
{
	uint8_t *buf;
	while ((buf = virtq_get_used(&txq, NULL)) != NULL)
		tx_free[tx_free_count++] = buf;
}

/* tx_frame returns a free transmit buffer's frame area (after the
 * virtio_net_hdr), or NULL. */
static uint8_t *tx_frame(void)
{
	if (tx_free_count == 0)
		reclaim_tx();
	if (tx_free_count == 0)
		return NULL;
	uint8_t *buf = tx_free[--tx_free_count];
	memset(buf, 0, NET_HDR);
	return buf + NET_HDR;
}

/* tx_send queues a frame built in a tx_frame() buffer and kicks. */
static void tx_send(uint8_t *frame, uint16_t len)
{
	uint8_t *buf = frame - NET_HDR;
	struct virtq_buf b = {buf, (uint32_t)(NET_HDR + len), false};
	if (virtq_add(&txq, &b, 1, buf) < 0) {
		tx_free[tx_free_count++] = buf; /* cannot happen: pool <= queue */
		return;
	}
	virtq_kick(&txq);
}

static void eth_header(uint8_t *f, const uint8_t dst[6], uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, type);
}

/* ---- ARP: who has this IP? ---- */

static void arp_send(uint16_t op, const uint8_t dst_mac[6], const uint8_t target_mac[6], uint32_t target_ip)
{
	uint8_t *f = tx_frame();
	if (!f)
		return;
	eth_header(f, dst_mac, ETH_TYPE_ARP);
	uint8_t *a = f + ETH_HEADER;
	put16(a, 1);             /* hardware: Ethernet */
	put16(a + 2, 0x0800);    /* protocol: IPv4 */
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);        /* 1 request, 2 reply */
	memcpy(a + 8, mac, 6);   /* sender */
	put32(a + 14, net_ip);
	memcpy(a + 18, target_mac, 6);
	put32(a + 24, target_ip);
	tx_send(f, ETH_HEADER + 28 + 18); /* padded to the 60-byte minimum */
}

static struct neighbour *neighbour_find(uint32_t ip)
{
	for (int i = 0; i < neighbour_count; i++)
		if (neighbours[i].ip == ip)
			return &neighbours[i];
	return NULL;
}

static void arp_input(const uint8_t *a, uint16_t len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != 0x0800)
		return;
	uint16_t op = get16(a + 6);
	uint32_t sender_ip = get32(a + 14), target_ip = get32(a + 24);
	if (op == 2 || target_ip == net_ip) {
		struct neighbour *n = neighbour_find(sender_ip);
		if (n) {
			memcpy(n->mac, a + 8, 6);
			n->known = true;
		}
	}
	if (op == 1 && target_ip == net_ip)
		arp_send(2, a + 8, a + 8, sender_ip);
}

/* ---- IPv4 and ICMP ---- */

uint8_t *net_ip_payload(void)
{
	uint8_t *f = tx_frame();
	return f ? f + ETH_HEADER + IP_HEADER : NULL;
}

void format_ip(char *out, size_t size, uint32_t ip)
{
	ksnprintf(out, size, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

void net_ip_send(uint8_t *payload, const uint8_t dst_mac[6], uint32_t dst_ip, uint8_t proto, uint16_t len)
{
	uint8_t *ip = payload - IP_HEADER, *f = ip - ETH_HEADER;
	struct virtio_net_hdr *h = (struct virtio_net_hdr *)(f - NET_HDR);
	eth_header(f, dst_mac, ETH_TYPE_IPV4);
	ip[0] = 0x45; /* version 4, 5-word header */
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(IP_HEADER + len));
	put16(ip + 4, ip_id++);
	put16(ip + 6, 0x4000); /* don't fragment */
	ip[8] = 64;            /* TTL */
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, net_ip);
	put32(ip + 16, dst_ip);
	put16(ip + 10, checksum_finish(checksum_add(0, ip, IP_HEADER)));

	if (proto == IP_PROTO_TCP) {
		/* The TCP checksum covers a pseudo-header (addresses, protocol,
		 * length) and the whole segment. */
		uint32_t pseudo = checksum_add(0, ip + 12, 8) + IP_PROTO_TCP + len;
		put16(payload + 16, 0);
		if (virtio_has(&dev, VIRTIO_NET_F_CSUM)) {
			while (pseudo >> 16)
				pseudo = (pseudo & 0xffff) + (pseudo >> 16);
			put16(payload + 16, (uint16_t)pseudo);
			h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
			h->csum_start = ETH_HEADER + IP_HEADER;
			h->csum_offset = 16;
		} else {
			put16(payload + 16, checksum_finish(checksum_add(pseudo, payload, len)));
		}
	}
	uint16_t frame = (uint16_t)(ETH_HEADER + IP_HEADER + len);
	tx_send(f, frame < 60 ? 60 : frame);
}

static void icmp_echo(const uint8_t dst_mac[6], uint32_t dst_ip, uint8_t type, uint16_t id, uint16_t seq,
		      const uint8_t *data, uint16_t data_len)
{
	uint8_t *p = net_ip_payload();
	if (!p)
		return;
	if (data_len > 1472) /* 1500-byte MTU less IP and ICMP headers */
		data_len = 1472;
	p[0] = type; /* 8 request, 0 reply */
	p[1] = 0;
	put16(p + 2, 0);
	put16(p + 4, id);
	put16(p + 6, seq);
	memcpy(p + 8, data, data_len);
	put16(p + 2, checksum_finish(checksum_add(0, p, 8u + data_len)));
	net_ip_send(p, dst_mac, dst_ip, IP_PROTO_ICMP, (uint16_t)(8 + data_len));
}

#define PING_ID 0x4754

static void icmp_input(const uint8_t src_mac[6], uint32_t src_ip, const uint8_t *p, uint16_t len)
{
	if (len < 8)
		return;
	if (p[0] == 8) {
		icmp_echo(src_mac, src_ip, 0, get16(p + 4), get16(p + 6), p + 8, (uint16_t)(len - 8));
		net_stats.served_icmp++;
	} else if (p[0] == 0 && get16(p + 4) == PING_ID && src_ip == ping_dst && get16(p + 6) == ping_seq) {
		ping_replied = true;
	}
}

static void ip_input(const uint8_t src_mac[6], const uint8_t *ip, uint16_t len)
{
	if (len < IP_HEADER || (ip[0] >> 4) != 4)
		return;
	uint16_t hlen = (uint16_t)((ip[0] & 15) * 4), total = get16(ip + 2);
	if (hlen < IP_HEADER || total < hlen || total > len)
		return;
	if (get16(ip + 6) & 0x3fff)
		return; /* fragments are not reassembled */
	uint32_t src = get32(ip + 12), dst = get32(ip + 16);
	if (dst != net_ip)
		return;
	const uint8_t *payload = ip + hlen;
	uint16_t plen = (uint16_t)(total - hlen);
	if (ip[9] == IP_PROTO_ICMP)
		icmp_input(src_mac, src, payload, plen);
	else if (ip[9] == IP_PROTO_TCP)
		tcp_input(src_mac, src, payload, plen);
}

static void frame_input(const uint8_t *f, uint32_t len)
{
	if (len < ETH_HEADER)
		return;
	uint16_t type = get16(f + 12);
	if (memcmp(f, mac, 6) != 0 && memcmp(f, broadcast, 6) != 0)
		return;
	if (type == ETH_TYPE_ARP)
		arp_input(f + ETH_HEADER, (uint16_t)(len - ETH_HEADER));
	else if (type == ETH_TYPE_IPV4)
		ip_input(f + 6, f + ETH_HEADER, (uint16_t)(len - ETH_HEADER));
}

/* ---- the event loop ---- */

/* net_poll handles everything that happened since the last call: received
 * frames, finished transmissions, finished burns, TCP timers. */
static uint64_t net_poll(void)
{
	(void)take_pending(VEC_NET_RX);
	(void)take_pending(VEC_NET_TX);
	(void)take_pending(VEC_NET_CONFIG);
	bool reposted = false;
	uint8_t *buf;
	uint32_t len;
	while ((buf = virtq_get_used(&rxq, &len)) != NULL) {
		if (len > NET_HDR && len <= BUF_SIZE)
			frame_input(buf + NET_HDR, len - NET_HDR);
		post_rx(buf);
		reposted = true;
	}
	if (reposted)
		virtq_kick(&rxq);
	reclaim_tx();
	if (take_pending(VEC_DONE))
		tcp_burn_done();
	return tcp_timers();
}

/* net_serve_until runs the network until done() or the deadline (TSC;
 * 0 = none), sleeping in "sti; hlt" between interrupts. It returns
 * whether done() became true. BSP only; everything the guest serves is
 * answered meanwhile, so a caller waiting for its own packets never
 * stops the guest from serving others. */
bool net_serve_until(uint64_t deadline, bool (*done)(void))
{
	for (;;) {
		cli();
		uint64_t next = net_poll();
		if (done && done())
			return true;
		uint64_t now = rdtsc();
		if (deadline && now >= deadline)
			return false;
		if (!next || (deadline && deadline < next))
			next = deadline;
		wait_for_interrupt_until(next);
	}
}

static struct neighbour *resolving;
static bool resolved(void) { return resolving->known; }

/*
 * net_resolve finds the MAC of ip, which must be on the guest's own
 * subnet (a next hop): from the neighbour table, or by broadcasting an
 * ARP request up to `tries` times, waiting a second after each. It
 * returns false if nobody answered (or the table is full).
 */
bool net_resolve(uint32_t ip, int tries, uint8_t mac_out[6])
{
	struct neighbour *n = neighbour_find(ip);
	if (!n) {
		if (neighbour_count == NEIGHBOURS)
			return false;
		n = &neighbours[neighbour_count++];
		n->ip = ip;
	}
	resolving = n;
	for (int i = 0; i < tries && !n->known; i++) {
		static const uint8_t zero[6];
		arp_send(1, broadcast, zero, ip);
		net_serve_until(rdtsc() + ms_to_tsc(1000), resolved);
	}
	if (n->known)
		memcpy(mac_out, n->mac, 6);
	return n->known;
}

static bool ping_answered(void) { return ping_replied; }

/* net_ping sends one ICMP echo request to ip through next_mac (the
 * address's own MAC on the subnet, the gateway's otherwise) and waits up
 * to a second for its reply. Each call uses a new sequence number, so a
 * late reply to an earlier request is not taken for this one's. */
bool net_ping(const uint8_t next_mac[6], uint32_t ip)
{
	static const uint8_t payload[32] = "gureum-testguest ping payload..";
	ping_dst = ip;
	ping_seq++;
	ping_replied = false;
	icmp_echo(next_mac, ip, 8, PING_ID, ping_seq, payload, sizeof payload);
	return net_serve_until(rdtsc() + ms_to_tsc(1000), ping_answered);
}

static bool served_both(void) { return net_stats.served_icmp >= 1 && net_stats.served_http >= 1; }

enum result net_selftest(void)
{
	if (!net_init()) {
		kprintf("selftest net: skip no device\n");
		return RESULT_SKIP;
	}
	uint8_t gateway_mac[6];
	if (!net_resolve(config.gateway, 5, gateway_mac)) {
		char gw[16];
		format_ip(gw, sizeof gw, config.gateway);
		kprintf("selftest net: fail arp=0 gateway %s did not answer\n", gw);
		return RESULT_FAIL;
	}
	int pings = 0;
	for (int i = 0; i < 3; i++)
		if (net_ping(gateway_mac, config.gateway))
			pings++;
	kprintf("selftest net: listening\n");
	net_serve_until(rdtsc() + ms_to_tsc(config.net_wait_s * 1000), served_both);
	/* The HTTP response may still be unacknowledged (lost, or queued in
	 * the VMM): keep serving, which resends it, until the peer has it,
	 * rather than power off with it in flight. */
	net_serve_until(rdtsc() + ms_to_tsc(2000), tcp_idle);
	bool ok = pings > 0 && (net_stats.served_icmp > 0 || net_stats.served_http > 0);
	kprintf("selftest net: %s arp=1 ping=%d/3 served_icmp=%u served_http=%u\n", ok ? "ok" : "fail", pings,
		net_stats.served_icmp, net_stats.served_http);
	return ok ? RESULT_OK : RESULT_FAIL;
}

/* net_serve_forever is "serve" mode: answer ARP, ping and HTTP for ever,
 * after probing the peers given with peer= (peer.c) while serving. */
void net_serve_forever(void)
{
	if (!net_init())
		fatal("serve: no virtio-net device");
	/* Announce ourselves (gratuitous ARP) so the host learns our MAC. */
	arp_send(1, broadcast, broadcast, net_ip);
	if (config.peer_count)
		peer_probe_all();
	net_serve_until(0, NULL);
	fatal("serve loop ended");
}
