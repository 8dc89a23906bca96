package imds

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"gureum/network/namespace"
	"gureum/network/vpc"
	"gureum/vmm/vmmtest"
)

type instances map[netip.Addr]Instance

func (m instances) InstanceByAddress(a netip.Addr) (Instance, bool) {
	i, ok := m[a]
	return i, ok
}

var (
	addrA = netip.MustParseAddr("10.30.1.4")
	addrB = netip.MustParseAddr("10.30.1.5")
)

func fleet() instances {
	return instances{
		addrA: {ID: "i-aaaa", Type: "t3.micro", LocalIPv4: addrA, AvailabilityZone: "local-1a", Hostname: "ip-10-30-1-4",
			PublicKeys: map[string]string{"mykey": "ssh-ed25519 AAAA test"}, UserData: []byte("#!/bin/sh\necho hi\n"), RequireToken: true},
		addrB: {ID: "i-bbbb", Type: "m5.large", LocalIPv4: addrB, AvailabilityZone: "local-1b"},
	}
}

// do sends one request as if from addr.
func do(h http.Handler, addr netip.Addr, method, path string, hdr map[string]string) (int, string) {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = netip.AddrPortFrom(addr, 40000).String()
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestMetadataPathsAndTokens(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	h := NewHandler(fleet(), func() time.Time { return now })

	// A requires v2: nothing without a token.
	if code, _ := do(h, addrA, "GET", "/latest/meta-data/instance-id", nil); code != 401 {
		t.Fatalf("v1 request to a v2-only instance: %d, want 401", code)
	}
	for _, ttl := range []string{"", "0", "21601", "abc"} {
		if code, _ := do(h, addrA, "PUT", "/latest/api/token", map[string]string{HeaderTTL: ttl}); code != 400 {
			t.Errorf("token with TTL %q: %d, want 400", ttl, code)
		}
	}
	if code, _ := do(h, addrA, "GET", "/latest/api/token", map[string]string{HeaderTTL: "60"}); code != 405 {
		t.Errorf("GET token: %d, want 405", code)
	}
	code, tok := do(h, addrA, "PUT", "/latest/api/token", map[string]string{HeaderTTL: "60"})
	if code != 200 || tok == "" {
		t.Fatalf("token: %d %q", code, tok)
	}
	auth := map[string]string{HeaderToken: tok}
	for path, want := range map[string]string{
		"/latest/meta-data/instance-id":                 "i-aaaa",
		"/latest/meta-data/instance-type":               "t3.micro",
		"/latest/meta-data/local-ipv4":                  "10.30.1.4",
		"/latest/meta-data/placement/availability-zone": "local-1a",
		"/latest/meta-data/hostname":                    "ip-10-30-1-4",
		"/latest/meta-data/public-keys/":                "0=mykey",
		"/latest/meta-data/public-keys/0/openssh-key":   "ssh-ed25519 AAAA test",
		"/latest/user-data":                             "#!/bin/sh\necho hi\n",
	} {
		if code, body := do(h, addrA, "GET", path, auth); code != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, code, body, want)
		}
	}
	if code, body := do(h, addrA, "GET", "/latest/meta-data/", auth); code != 200 || !strings.Contains(body, "instance-id\n") {
		t.Errorf("listing: %d %q", code, body)
	}
	if code, _ := do(h, addrA, "GET", "/latest/meta-data/nothing", auth); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
	// A's token is A's: B cannot use it, and a forged one fails.
	if code, _ := do(h, addrB, "GET", "/latest/meta-data/instance-id", auth); code != 401 {
		t.Errorf("B with A's token: %d, want 401", code)
	}
	// Forged: one character of the MAC changed, or only the unused low
	// bits of the last character set.
	last := strings.IndexByte(b64url, tok[len(tok)-1])
	for _, forged := range []string{
		tok[:20] + string(b64url[(strings.IndexByte(b64url, tok[20])+1)%64]) + tok[21:],
		tok[:len(tok)-1] + string(b64url[last|1]),
	} {
		if forged == tok {
			t.Fatalf("forged token %q equals the real one", forged)
		}
		if code, _ := do(h, addrA, "GET", "/latest/meta-data/instance-id", map[string]string{HeaderToken: forged}); code != 401 {
			t.Errorf("forged token %q (real %q): %d, want 401", forged, tok, code)
		}
	}
	// B allows v1, and sees only itself; B has no user data.
	if code, body := do(h, addrB, "GET", "/latest/meta-data/instance-id", nil); code != 200 || body != "i-bbbb" {
		t.Errorf("B v1: %d %q", code, body)
	}
	if code, _ := do(h, addrB, "GET", "/latest/user-data", nil); code != 404 {
		t.Errorf("B user-data: %d, want 404", code)
	}
	// Unknown sources get nothing.
	if code, _ := do(h, netip.MustParseAddr("10.30.1.99"), "GET", "/latest/meta-data/instance-id", nil); code != 403 {
		t.Errorf("unknown source: %d, want 403", code)
	}
	// The token expires.
	now = now.Add(61 * time.Second)
	if code, _ := do(h, addrA, "GET", "/latest/meta-data/instance-id", auth); code != 401 {
		t.Errorf("expired token: %d, want 401", code)
	}
}

// TestMetadataInVPC serves a real VPC and asks from a namespace plugged
// into its bridge with instance A's address.
func TestMetadataInVPC(t *testing.T) {
	vmmtest.RequireRoot(t)
	v, err := vpc.Create(fmt.Sprintf("vpc-imds%d", os.Getpid()), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(v.Namespace()) })
	if err := v.AddGateway(netip.MustParsePrefix("10.30.1.1/24")); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(v, NewHandler(fleet(), nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client := fmt.Sprintf("gureum-imdsc-%d", os.Getpid())
	if err := namespace.Create(client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(client) })
	if err := v.ConnectNamespace(vpc.Host{Namespace: client, Name: "eth0", Port: "veth-imds",
		Address: netip.PrefixFrom(addrA, 24), Gateway: netip.MustParseAddr("10.30.1.1")}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := namespace.Do(client, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	get := func(method, path string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest(method, "http://169.254.169.254"+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("GET", "/latest/meta-data/instance-id", nil); code != 401 {
		t.Fatalf("without token: %d, want 401", code)
	}
	code, tok := get("PUT", "/latest/api/token", map[string]string{HeaderTTL: "300"})
	if code != 200 {
		t.Fatalf("token: %d", code)
	}
	if code, body := get("GET", "/latest/meta-data/instance-id", map[string]string{HeaderToken: tok}); code != 200 || body != "i-aaaa" {
		t.Fatalf("instance-id with token: %d %q", code, body)
	}
	if code, body := get("GET", "/latest/user-data", map[string]string{HeaderToken: tok}); code != 200 || !strings.Contains(body, "echo hi") {
		t.Fatalf("user-data: %d %q", code, body)
	}
}

// b64url is the alphabet of base64.RawURLEncoding, in value order.
const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
