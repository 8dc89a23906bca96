/*
 * tcp.c - a TCP that is just enough for HTTP/1.0 on port 80.
 *
 * A connection here lives through:
 *   SYN_RECEIVED  the peer's SYN arrived; we answered SYN+ACK
 *   ESTABLISHED   our SYN was acknowledged; request bytes accumulate
 *   WAIT_BURN     a /burn request waits for the APs to finish burning
 *   CLOSING       the response went out in one segment with FIN; we wait
 *                 for its acknowledgement and for the peer's FIN
 * Sequence numbers count bytes; SYN and FIN each count as one. The guest
 * accepts only in-order data, acknowledges everything it sees, and
 * resends the response segment once a second until it is acknowledged
 * (at most a few times). Responses are small enough for one segment.
 *
 * HTTP: GET / answers "gureum-testguest <ip>[ <name>]"; GET /burn?seconds=N
 * burns CPU for N seconds first; GET /poweroff and GET /reboot answer,
 * then act.
 *
 * Segments for the peer probe's own connection (peer.c, the client side)
 * are handed to it before any of this.
 */
#include "net.h"
#include "x86.h"

#define MAX_CONNS 8
#define REQUEST_MAX 512
#define RESPONSE_MAX 512
#define RESEND_MS 1000
#define MAX_RESENDS 5
#define IDLE_MS 30000

enum conn_state { FREE, SYN_RECEIVED, ESTABLISHED, WAIT_BURN, CLOSING };

struct conn {
	enum conn_state state;
	uint8_t peer_mac[6];
	uint32_t peer_ip;
	uint16_t peer_port;
	uint32_t iss;     /* our initial sequence number */
	uint32_t snd_nxt; /* next sequence number we send */
	uint32_t rcv_nxt; /* next sequence number we expect */
	bool fin_received, fin_acked;
	uint16_t request_len, response_len;
	char request[REQUEST_MAX + 1];
	char response[RESPONSE_MAX];
	uint64_t deadline; /* TSC: resend or give up */
	int resends;
	uint64_t burn_seconds;
};

static struct conn conns[MAX_CONNS];
static bool burn_running;
static enum { AFTER_NONE, AFTER_POWEROFF, AFTER_REBOOT } after_reply;
static uint64_t after_reply_at;

/* tcp_send sends one segment without options; the server here and the
 * peer probe's client (peer.c) both build on it. */
void tcp_send(const uint8_t mac[6], uint32_t ip, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
	      uint8_t flags, const void *data, uint16_t len)
{
	uint8_t *p = net_ip_payload();
	if (!p)
		return;
	put16(p, sport);
	put16(p + 2, dport);
	put32(p + 4, seq);
	put32(p + 8, ack);
	p[12] = 5 << 4; /* header length: 5 words, no options */
	p[13] = flags;
	put16(p + 14, TCP_WINDOW);
	put16(p + 16, 0); /* checksum: net_ip_send */
	put16(p + 18, 0);
	memcpy(p + 20, data, len);
	net_ip_send(p, mac, ip, IP_PROTO_TCP, (uint16_t)(20 + len));
}

static void conn_send(struct conn *c, uint32_t seq, uint8_t flags, const void *data, uint16_t len)
{
	tcp_send(c->peer_mac, c->peer_ip, HTTP_PORT, c->peer_port, seq, c->rcv_nxt, flags, data, len);
}

/* The response segment: data, then FIN, which is sequence number
 * iss + 1 + response_len. */
static void send_response(struct conn *c)
{
	conn_send(c, c->iss + 1, TCP_ACK | TCP_PSH | TCP_FIN, c->response, c->response_len);
	c->deadline = rdtsc() + ms_to_tsc(RESEND_MS);
}

static void respond(struct conn *c, int status, const char *body)
{
	const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
	size_t body_len = strlen(body);
	int n = ksnprintf(c->response, RESPONSE_MAX,
			  "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %lu\r\nConnection: close\r\n\r\n%s",
			  status, reason, (uint64_t)body_len, body);
	c->response_len = (uint16_t)(n < RESPONSE_MAX ? n : RESPONSE_MAX - 1);
	c->snd_nxt = c->iss + 1 + c->response_len + 1;
	c->state = CLOSING;
	c->resends = 0;
	send_response(c);
	net_stats.served_http++;
}

static void burn_work(uint64_t ticks) { burn_tsc(ticks); }

/* start_burn gives every AP (every vCPU but the BSP, which serves the
 * network) `seconds` of spinning. With a single vCPU the BSP burns itself
 * and the network waits. Returns false if it burned synchronously. */
static bool start_burn(uint64_t seconds)
{
	uint64_t ticks = ms_to_tsc(seconds * 1000);
	if (cpus_online < 2) {
		burn_tsc(ticks);
		return false;
	}
	if (!burn_running) {
		for (uint32_t i = 0; i < acpi.cpu_count; i++)
			ap_give_work((int)i, burn_work, ticks);
		burn_running = true;
	}
	return true;
}

static bool any_ap_busy(void)
{
	for (uint32_t i = 0; i < acpi.cpu_count; i++)
		if (ap_is_busy((int)i))
			return true;
	return false;
}

static void reply_burned(struct conn *c)
{
	char body[96];
	ksnprintf(body, sizeof body, "burned %lu s on %u vCPUs\n", c->burn_seconds,
		  cpus_online > 1 ? cpus_online - 1 : 1);
	respond(c, 200, body);
}

void tcp_burn_done(void)
{
	if (any_ap_busy())
		return;
	burn_running = false;
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state == WAIT_BURN)
			reply_burned(&conns[i]);
}

/* handle_request parses the request line "GET <path> HTTP/1.x". */
static void handle_request(struct conn *c)
{
	const char *r = c->request;
	if (!str_starts(r, "GET ")) {
		respond(c, 400, "only GET is served\n");
		return;
	}
	const char *path = r + 4;
	char body[160], ip[16];
	if (str_starts(path, "/ ") || str_starts(path, "/\r") || str_starts(path, "/\n")) {
		format_ip(ip, sizeof ip, net_ip);
		if (config.name[0])
			ksnprintf(body, sizeof body, "gureum-testguest %s %s\n", ip, config.name);
		else
			ksnprintf(body, sizeof body, "gureum-testguest %s\n", ip);
		respond(c, 200, body);
	} else if (str_starts(path, "/burn?seconds=")) {
		uint64_t s;
		if (!parse_u64(path + 14, NULL, &s) || s > 3600) {
			respond(c, 400, "seconds must be 0..3600\n");
			return;
		}
		c->burn_seconds = s;
		if (start_burn(s))
			c->state = WAIT_BURN;
		else
			reply_burned(c);
	} else if (str_starts(path, "/poweroff ")) {
		respond(c, 200, "powering off\n");
		after_reply = AFTER_POWEROFF;
		after_reply_at = rdtsc() + ms_to_tsc(200);
	} else if (str_starts(path, "/reboot ")) {
		respond(c, 200, "rebooting\n");
		after_reply = AFTER_REBOOT;
		after_reply_at = rdtsc() + ms_to_tsc(200);
	} else {
		respond(c, 404, "not found\n");
	}
}

static bool request_complete(const struct conn *c)
{
	for (uint16_t i = 0; i + 1 < c->request_len; i++) {
		if (c->request[i] == '\n' && c->request[i + 1] == '\n')
			return true;
		if (i + 3 < c->request_len && c->request[i] == '\r' && c->request[i + 1] == '\n' &&
		    c->request[i + 2] == '\r' && c->request[i + 3] == '\n')
			return true;
	}
	return false;
}

static struct conn *find_conn(uint32_t ip, uint16_t port)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state != FREE && conns[i].peer_ip == ip && conns[i].peer_port == port)
			return &conns[i];
	return NULL;
}

/* tcp_idle reports whether no connection is open: every response has
 * been acknowledged and every peer has closed (or given up on). */
bool tcp_idle(void)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].state != FREE)
			return false;
	return true;
}

/* new_conn takes a free slot, or else the one closest to done. */
static struct conn *new_conn(void)
{
	struct conn *victim = NULL;
	for (int i = 0; i < MAX_CONNS; i++) {
		if (conns[i].state == FREE)
			return &conns[i];
		if (conns[i].state == CLOSING && (!victim || conns[i].deadline < victim->deadline))
			victim = &conns[i];
	}
	return victim;
}

static void send_reset(const uint8_t mac[6], uint32_t ip, uint16_t sport, uint16_t dport, uint32_t seq,
		       uint32_t ack, uint8_t flags, uint16_t len)
{
	if (flags & TCP_RST)
		return;
	if (flags & TCP_ACK)
		tcp_send(mac, ip, dport, sport, ack, 0, TCP_RST, NULL, 0);
	else
		tcp_send(mac, ip, dport, sport, 0, seq + len + ((flags & TCP_SYN) ? 1 : 0), TCP_RST | TCP_ACK, NULL,
			     0);
}

void tcp_input(const uint8_t src_mac[6], uint32_t src_ip, const uint8_t *seg, uint16_t len)
{
	if (len < 20)
		return;
	uint16_t sport = get16(seg), dport = get16(seg + 2);
	uint32_t seq = get32(seg + 4), ack = get32(seg + 8);
	uint16_t hlen = (uint16_t)((seg[12] >> 4) * 4);
	uint8_t flags = seg[13];
	if (hlen < 20 || hlen > len)
		return;
	const uint8_t *data = seg + hlen;
	uint16_t dlen = (uint16_t)(len - hlen);

	if (peer_tcp_input(src_ip, sport, dport, seq, ack, flags, data, dlen))
		return; /* an answer to the peer probe's own connection */
	struct conn *c = find_conn(src_ip, sport);
	if (dport != HTTP_PORT) {
		send_reset(src_mac, src_ip, sport, dport, seq, ack, flags, dlen);
		return;
	}
	if (flags & TCP_RST) {
		if (c && c->state != WAIT_BURN)
			c->state = FREE;
		return;
	}
	if ((flags & TCP_SYN) && !(flags & TCP_ACK)) {
		if (c && c->state == SYN_RECEIVED && seq + 1 == c->rcv_nxt) {
			conn_send(c, c->iss, TCP_SYN | TCP_ACK, NULL, 0); /* our SYN+ACK was lost */
			return;
		}
		if (c && c->state == WAIT_BURN)
			return;
		if (!c)
			c = new_conn();
		if (!c) {
			send_reset(src_mac, src_ip, sport, dport, seq, ack, flags, dlen);
			return;
		}
		memset(c, 0, sizeof *c);
		c->state = SYN_RECEIVED;
		memcpy(c->peer_mac, src_mac, 6);
		c->peer_ip = src_ip;
		c->peer_port = sport;
		c->iss = (uint32_t)rdtsc();
		c->snd_nxt = c->iss + 1;
		c->rcv_nxt = seq + 1;
		c->deadline = rdtsc() + ms_to_tsc(IDLE_MS);
		conn_send(c, c->iss, TCP_SYN | TCP_ACK, NULL, 0);
		return;
	}
	if (!c) {
		send_reset(src_mac, src_ip, sport, dport, seq, ack, flags, dlen);
		return;
	}
	if (!(flags & TCP_ACK))
		return;
	if (c->state == SYN_RECEIVED && ack == c->iss + 1)
		c->state = ESTABLISHED;
	if (c->state == CLOSING && ack == c->snd_nxt)
		c->fin_acked = true;

	bool need_ack = false;
	if (dlen > 0 || (flags & TCP_FIN)) {
		if (seq == c->rcv_nxt) {
			if (c->state == ESTABLISHED) {
				uint16_t room = (uint16_t)(REQUEST_MAX - c->request_len);
				uint16_t take = dlen < room ? dlen : room;
				memcpy(c->request + c->request_len, data, take);
				c->request_len = (uint16_t)(c->request_len + take);
				c->request[c->request_len] = 0;
			}
			c->rcv_nxt += dlen;
			if (flags & TCP_FIN) {
				c->rcv_nxt++;
				c->fin_received = true;
			}
		}
		need_ack = true; /* in order or not: tell the peer where we are */
	}
	if (c->state == ESTABLISHED &&
	    (request_complete(c) || c->request_len == REQUEST_MAX || (c->fin_received && c->request_len))) {
		handle_request(c); /* the response carries the ACK */
		need_ack = false;
	}
	if (need_ack) {
		uint32_t our_seq = c->state == CLOSING ? c->snd_nxt : c->iss + 1;
		conn_send(c, our_seq, TCP_ACK, NULL, 0);
	}
	if (c->state == CLOSING && c->fin_acked && c->fin_received)
		c->state = FREE;
}

/* tcp_timers resends unacknowledged responses, drops dead connections
 * and carries out a pending poweroff or reboot; it returns the earliest
 * time it wants to run again (0 = never). */
uint64_t tcp_timers(void)
{
	uint64_t now = rdtsc(), next = 0;
	if (after_reply != AFTER_NONE) {
		if (now >= after_reply_at) {
			if (after_reply == AFTER_POWEROFF)
				acpi_poweroff();
			machine_reboot();
		}
		next = after_reply_at;
	}
	for (int i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &conns[i];
		if (c->state == FREE || c->state == WAIT_BURN)
			continue;
		if (now >= c->deadline) {
			if (c->state == CLOSING && !c->fin_acked && c->resends < MAX_RESENDS) {
				c->resends++;
				send_response(c);
			} else if (c->state == CLOSING && c->fin_acked && c->resends < MAX_RESENDS) {
				/* Waiting only for the peer's FIN: give it a while. */
				c->resends = MAX_RESENDS;
				c->deadline = now + ms_to_tsc(IDLE_MS);
			} else {
				c->state = FREE;
				continue;
			}
		}
		if (!next || c->deadline < next)
			next = c->deadline;
	}
	return next;
}
