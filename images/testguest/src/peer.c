/*
 * peer.c - serve mode's probe of other guests (the peer= words).
 *
 * For each peer the guest tries, in one attempt: ARP for the next hop
 * (the peer itself when it is on the guest's subnet, the gateway
 * otherwise), three ICMP echo requests, and an HTTP GET / on port 80
 * over a TCP connection of its own. It repeats the attempt until one
 * gets ARP, 3/3 pings and a complete 200 response, or until peer.wait
 * seconds have passed; then it prints one line per peer:
 *
 *   peer 10.0.0.3: ok arp=1 ping=3/3 http=200 bytes=30 tries=2
 *   peer 10.0.0.3: fail arp=0 ping=0/3 http=none bytes=0 tries=8
 *
 * Every wait goes through net_serve_until, so the guest answers ARP,
 * pings and HTTP the whole time: two guests can probe each other.
 *
 * The client connection lives through:
 *   CLOSED       no connection (before, between and after attempts)
 *   SYN_SENT     our SYN is out, resent every second
 *   ESTABLISHED  the peer's SYN+ACK came; the request went out with the
 *                ACK (resent until acknowledged); the response arrives
 *   CLOSING      the response is over (the peer's FIN, or Content-Length
 *                bytes of body); our FIN is out, resent until
 *                acknowledged, and we wait for the peer's FIN
 * A reset, a give-up after HTTP_MS, or a malformed response (we send a
 * reset then) also ends in CLOSED. Like tcp.c it takes only in-order
 * data and acknowledges every segment it sees. The response's header is
 * kept (at most HEAD_MAX bytes); the body is only counted.
 */
#include "net.h"
#include "x86.h"

#define FIRST_PORT 49152 /* our ports: the dynamic range, 49152..65535 */
#define PORT_COUNT 16384
#define ARP_TRIES 3      /* one second each */
#define PINGS 3          /* one second each at most */
#define HTTP_MS 5000     /* the whole exchange, connect to close */
#define RESEND_MS 1000
#define PAUSE_MS 1000    /* between attempts */
#define REQUEST_MAX 128
#define HEAD_MAX 1024

enum client_state { CLOSED, SYN_SENT, ESTABLISHED, CLOSING };

/* How the HTTP part of an attempt ended, as the report names it. */
enum http_outcome {
	HTTP_NONE,    /* "none": no answer to our SYN */
	HTTP_REFUSED, /* "refused": the SYN was answered with a reset */
	HTTP_RESET,   /* "reset": a reset after the handshake, response incomplete */
	HTTP_TIMEOUT, /* "timeout": connected, but no complete response in time */
	HTTP_BAD,     /* "bad": not HTTP/1.x, a header over HEAD_MAX, a body of the wrong length */
	HTTP_STATUS,  /* the status code: a complete response */
};

/* The one client connection; only the BSP touches it. */
static struct client {
	enum client_state state;
	uint8_t next_mac[6];
	uint32_t ip;
	uint16_t port; /* ours; the peer's is HTTP_PORT */
	uint32_t iss;  /* our initial sequence number */
	uint32_t snd_una, snd_nxt, rcv_nxt;
	bool connected, refused, reset, fin_received, malformed;
	uint64_t resend_at;
	uint16_t request_len;
	char request[REQUEST_MAX];
	/* the response */
	char head[HEAD_MAX + 1]; /* NUL-terminated */
	uint16_t head_len;
	bool head_done;
	int status;
	int64_t content_length; /* -1: none given */
	uint32_t body_bytes;
} conn;

static uint16_t next_port;

/* seq_after reports a > b in sequence space (which wraps). */
static bool seq_after(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

static void client_send(uint32_t seq, uint8_t flags, const void *data, uint16_t len)
{
	tcp_send(conn.next_mac, conn.ip, conn.port, HTTP_PORT, seq, conn.rcv_nxt, flags, data, len);
}

/* ---- the response ---- */

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* starts_nocase compares s, in any case, with a lower-case prefix. */
static bool starts_nocase(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (lower(*s) != *prefix)
			return false;
	return true;
}

/* header_end returns the length of the header including its blank line,
 * or -1 while "\r\n\r\n" has not arrived. */
static int header_end(const char *h, uint16_t len)
{
	for (uint16_t i = 0; i + 3 < len; i++)
		if (h[i] == '\r' && h[i + 1] == '\n' && h[i + 2] == '\r' && h[i + 3] == '\n')
			return i + 4;
	return -1;
}

/* next_line returns the start of the line after the one s is in, or NULL
 * when no line follows. */
static const char *next_line(const char *s)
{
	for (; *s; s++)
		if (s[0] == '\r' && s[1] == '\n')
			return s[2] ? s + 2 : NULL;
	return NULL;
}

/* parse_number reads 1 to `digits` decimal digits. */
static bool parse_number(const char *s, int digits, const char **end, uint32_t *out)
{
	uint32_t v = 0;
	int n = 0;
	while (*s >= '0' && *s <= '9') {
		if (++n > digits)
			return false;
		v = v * 10 + (uint32_t)(*s++ - '0');
	}
	*end = s;
	*out = v;
	return n > 0;
}

/* parse_head reads the status line "HTTP/1.x NNN ..." and Content-Length
 * from the complete header in conn.head (NUL-terminated, so no scan runs
 * past it). */
static void parse_head(void)
{
	const char *h = conn.head, *end;
	uint32_t v;
	if (!str_starts(h, "HTTP/1.") || h[7] < '0' || h[7] > '9' || h[8] != ' ' ||
	    !parse_number(h + 9, 3, &end, &v) || v < 100 || v > 599 || (*end != ' ' && *end != '\r')) {
		conn.malformed = true;
		return;
	}
	conn.status = (int)v;
	conn.content_length = -1;
	for (const char *line = next_line(h); line; line = next_line(line)) {
		if (!starts_nocase(line, "content-length:"))
			continue;
		const char *p = line + 15;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!parse_number(p, 9, &end, &v) || (*end != '\r' && *end != ' ' && *end != '\t')) {
			conn.malformed = true;
			return;
		}
		conn.content_length = v;
	}
}

/* take_data adds in-order response bytes: into the header buffer until
 * the header is complete, then only to the body count. */
static void take_data(const uint8_t *data, uint16_t len)
{
	if (conn.head_done) {
		conn.body_bytes += len;
		return;
	}
	uint16_t room = (uint16_t)(HEAD_MAX - conn.head_len);
	uint16_t take = len < room ? len : room;
	memcpy(conn.head + conn.head_len, data, take);
	conn.head_len = (uint16_t)(conn.head_len + take);
	conn.head[conn.head_len] = 0;
	int end = header_end(conn.head, conn.head_len);
	if (end < 0) {
		if (conn.head_len == HEAD_MAX)
			conn.malformed = true; /* a header longer than we keep */
		return;
	}
	conn.head_done = true;
	conn.body_bytes = (uint32_t)(conn.head_len - end) + (uint32_t)(len - take);
	conn.head[end] = 0; /* parse the header alone */
	parse_head();
}

/* response_over: nothing more to wait for; the body is all there (by
 * Content-Length) or the peer closed. */
static bool response_over(void)
{
	if (conn.fin_received)
		return true;
	return conn.head_done && conn.content_length >= 0 && conn.body_bytes >= (uint64_t)conn.content_length;
}

static bool response_complete(void)
{
	if (!conn.head_done || conn.malformed)
		return false;
	if (conn.content_length >= 0)
		return conn.body_bytes == (uint64_t)conn.content_length;
	return conn.fin_received;
}

/* ---- the connection ---- */

static void send_request(void)
{
	client_send(conn.iss + 1, TCP_ACK | TCP_PSH, conn.request, conn.request_len);
	conn.resend_at = rdtsc() + ms_to_tsc(RESEND_MS);
}

static void send_fin(void) { client_send(conn.snd_nxt - 1, TCP_ACK | TCP_FIN, NULL, 0); }

/* client_open sends a SYN to ip port 80 through next_mac. */
static void client_open(uint32_t ip, const uint8_t next_mac[6])
{
	memset(&conn, 0, sizeof conn);
	conn.ip = ip;
	memcpy(conn.next_mac, next_mac, 6);
	conn.port = (uint16_t)(FIRST_PORT + next_port++ % PORT_COUNT); /* a new port per attempt */
	conn.iss = (uint32_t)rdtsc();
	conn.snd_una = conn.iss;
	conn.snd_nxt = conn.iss + 1;
	char addr[16];
	format_ip(addr, sizeof addr, ip);
	int n = ksnprintf(conn.request, sizeof conn.request,
			  "GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: gureum-testguest\r\n\r\n", addr);
	conn.request_len = (uint16_t)(n < REQUEST_MAX ? n : REQUEST_MAX - 1);
	conn.state = SYN_SENT;
	client_send(conn.iss, TCP_SYN, NULL, 0);
	conn.resend_at = rdtsc() + ms_to_tsc(RESEND_MS);
}

/* client_abort ends the connection at once, telling the peer. */
static void client_abort(void)
{
	if (conn.connected)
		client_send(conn.snd_nxt, TCP_RST | TCP_ACK, NULL, 0);
	conn.state = CLOSED;
}

/* client_resend runs when resend_at passes: whatever we sent and the
 * peer has not acknowledged goes out again. */
static void client_resend(void)
{
	if (conn.state == SYN_SENT)
		client_send(conn.iss, TCP_SYN, NULL, 0);
	else if (conn.state == ESTABLISHED && conn.snd_una != conn.snd_nxt)
		send_request();
	else if (conn.state == CLOSING && conn.snd_una != conn.snd_nxt)
		send_fin();
	conn.resend_at = rdtsc() + ms_to_tsc(RESEND_MS);
}

bool peer_tcp_input(uint32_t src_ip, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
		    const uint8_t *data, uint16_t dlen)
{
	if (conn.state == CLOSED || src_ip != conn.ip || sport != HTTP_PORT || dport != conn.port)
		return false;
	if (flags & TCP_RST) {
		/* Only a reset that fits the connection counts: in SYN_SENT
		 * it must acknowledge our SYN, later sit at rcv_nxt. */
		if (conn.state == SYN_SENT && (flags & TCP_ACK) && ack == conn.iss + 1)
			conn.refused = true;
		else if (conn.state != SYN_SENT && seq == conn.rcv_nxt)
			conn.reset = true;
		else
			return true;
		conn.state = CLOSED;
		return true;
	}
	if (conn.state == SYN_SENT) {
		if ((flags & (TCP_SYN | TCP_ACK)) != (TCP_SYN | TCP_ACK) || ack != conn.iss + 1)
			return true; /* not the answer to our SYN: ignored */
		conn.connected = true;
		conn.rcv_nxt = seq + 1;
		conn.snd_una = ack;
		conn.snd_nxt = conn.iss + 1 + conn.request_len;
		conn.state = ESTABLISHED;
		send_request(); /* carries the ACK that completes the handshake */
		return true;
	}
	if (!(flags & TCP_ACK))
		return true;
	if (flags & TCP_SYN) {
		send_request(); /* a repeated SYN+ACK: our ACK was lost */
		return true;
	}
	if (seq_after(ack, conn.snd_una) && !seq_after(ack, conn.snd_nxt))
		conn.snd_una = ack;

	bool need_ack = false;
	if (dlen > 0 || (flags & TCP_FIN)) {
		if (seq == conn.rcv_nxt && !conn.fin_received) {
			take_data(data, dlen);
			conn.rcv_nxt += dlen;
			if (flags & TCP_FIN) {
				conn.rcv_nxt++;
				conn.fin_received = true;
			}
		}
		need_ack = true; /* in order or not: tell the peer where we are */
	}
	if (conn.malformed) {
		client_abort();
		return true;
	}
	if (conn.state == ESTABLISHED && response_over()) {
		conn.snd_nxt++; /* our FIN */
		conn.state = CLOSING;
		send_fin(); /* carries the ACK too */
		conn.resend_at = rdtsc() + ms_to_tsc(RESEND_MS);
		need_ack = false;
	}
	if (need_ack)
		client_send(conn.snd_nxt, TCP_ACK, NULL, 0);
	if (conn.state == CLOSING && conn.snd_una == conn.snd_nxt && conn.fin_received)
		conn.state = CLOSED; /* both FINs sent and acknowledged */
	return true;
}

static bool client_closed(void) { return conn.state == CLOSED; }

/* http_get runs one GET / against ip and returns how it ended; *status
 * and *bytes get the status code and body length of a response. */
static enum http_outcome http_get(uint32_t ip, const uint8_t next_mac[6], int *status, uint32_t *bytes)
{
	client_open(ip, next_mac);
	uint64_t give_up = rdtsc() + ms_to_tsc(HTTP_MS);
	while (conn.state != CLOSED) {
		uint64_t now = rdtsc();
		if (now >= give_up) {
			client_abort();
			break;
		}
		if (now >= conn.resend_at)
			client_resend();
		net_serve_until(conn.resend_at < give_up ? conn.resend_at : give_up, client_closed);
	}
	*status = conn.status;
	*bytes = conn.body_bytes;
	if (response_complete())
		return HTTP_STATUS; /* even if the close did not finish in time */
	if (!conn.connected)
		return conn.refused ? HTTP_REFUSED : HTTP_NONE;
	if (conn.malformed || response_over())
		return HTTP_BAD; /* the peer closed, but not after a whole response */
	return conn.reset ? HTTP_RESET : HTTP_TIMEOUT;
}

/* ---- the probe ---- */

struct attempt {
	bool arp;
	int pings;
	enum http_outcome http;
	int status;
	uint32_t bytes;
};

static void probe_once(uint32_t peer, struct attempt *a)
{
	memset(a, 0, sizeof *a);
	bool on_subnet = (peer & config.netmask) == (net_ip & config.netmask);
	uint8_t next_mac[6];
	if (!net_resolve(on_subnet ? peer : config.gateway, ARP_TRIES, next_mac))
		return; /* http stays "none": nothing was sent */
	a->arp = true;
	for (int i = 0; i < PINGS; i++)
		if (net_ping(next_mac, peer))
			a->pings++;
	a->http = http_get(peer, next_mac, &a->status, &a->bytes);
}

static bool attempt_ok(const struct attempt *a)
{
	return a->arp && a->pings == PINGS && a->http == HTTP_STATUS && a->status == 200;
}

static void report(uint32_t peer, const struct attempt *a, int tries)
{
	static const char *const names[] = {"none", "refused", "reset", "timeout", "bad"};
	char addr[16], http[16];
	format_ip(addr, sizeof addr, peer);
	if (a->http == HTTP_STATUS)
		ksnprintf(http, sizeof http, "%d", a->status);
	else
		ksnprintf(http, sizeof http, "%s", names[a->http]);
	kprintf("peer %s: %s arp=%d ping=%d/%d http=%s bytes=%u tries=%d\n", addr, attempt_ok(a) ? "ok" : "fail",
		a->arp ? 1 : 0, a->pings, PINGS, http, a->bytes, tries);
}

/*
 * peer_probe_all probes every peer in rounds: one attempt for each peer
 * not yet done, then a pause. A peer's line is printed as soon as an
 * attempt succeeds; the others' (with their last attempt) once peer.wait
 * seconds have passed. A round that has started runs to its end, so the
 * last lines come at most one round after peer.wait (a failing peer
 * takes 3 s in a round if ARP goes unanswered, 8 s if it is answered);
 * there is always at least one round.
 */
void peer_probe_all(void)
{
	struct attempt last[MAX_PEERS];
	int tries[MAX_PEERS] = {0};
	bool done[MAX_PEERS] = {false};
	uint32_t left = config.peer_count;
	uint64_t deadline = rdtsc() + ms_to_tsc(config.peer_wait_s * 1000);
	next_port = (uint16_t)rdtsc(); /* not the ports of a previous boot */
	for (;;) {
		for (uint32_t i = 0; i < config.peer_count; i++) {
			if (done[i])
				continue;
			probe_once(config.peers[i], &last[i]);
			tries[i]++;
			if (attempt_ok(&last[i])) {
				report(config.peers[i], &last[i], tries[i]);
				done[i] = true;
				left--;
			}
		}
		if (left == 0 || rdtsc() >= deadline)
			break;
		uint64_t pause = rdtsc() + ms_to_tsc(PAUSE_MS);
		net_serve_until(pause < deadline ? pause : deadline, NULL);
		if (rdtsc() >= deadline)
			break;
	}
	for (uint32_t i = 0; i < config.peer_count; i++)
		if (!done[i])
			report(config.peers[i], &last[i], tries[i]);
}
