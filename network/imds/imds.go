// Package imds is the instance metadata service: an HTTP server at
// 169.254.169.254 inside a VPC's namespace that tells each instance about
// itself (EC2's paths under /latest/meta-data/ and /latest/user-data).
//
// Who asks is known from the source address: the security group's bridge
// table lets a tap send only from its own address, so an address names one
// interface and with it one instance (Lookup). An instance never sees
// another's data.
//
// IMDSv2: a client first asks PUT /latest/api/token with the header
// X-aws-ec2-metadata-token-ttl-seconds (1–21600) and sends the token back in
// X-aws-ec2-metadata-token. A token is valid for the instance that asked and
// until its TTL runs out. A request with an invalid or expired token is
// refused (401); a request without one is refused only when the instance
// requires v2, and served otherwise (v1). Tokens are HMACs under a key made
// at start, so the server stores nothing per token; a restart makes all
// tokens invalid, and clients ask again, as they must anyway on expiry.
package imds

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"gureum/network/vpc"
)

// Instance is what the service tells one instance.
type Instance struct {
	ID               string
	Type             string
	LocalIPv4        netip.Addr
	AvailabilityZone string
	Hostname         string
	MAC              string
	// PublicKeys maps key names to OpenSSH public keys.
	PublicKeys map[string]string
	UserData   []byte
	// RequireToken is EC2's HttpTokens=required: no v1 requests.
	RequireToken bool
}

// Lookup finds the instance with a private address. The daemon implements
// it; it is called from HTTP goroutines, concurrently.
type Lookup interface {
	InstanceByAddress(addr netip.Addr) (Instance, bool)
}

// Token TTL bounds, in seconds, as in EC2.
const (
	MinTokenTTL = 1
	MaxTokenTTL = 21600
)

// Header names of the token flow.
const (
	HeaderTTL   = "X-aws-ec2-metadata-token-ttl-seconds"
	HeaderToken = "X-aws-ec2-metadata-token"
)

// Handler serves metadata for the instances Lookup knows.
type Handler struct {
	lookup Lookup
	key    []byte
	now    func() time.Time
}

// NewHandler makes a handler with a fresh token key. now is the clock
// (time.Now if nil; tests pass a fake one).
func NewHandler(lookup Lookup, now func() time.Time) *Handler {
	key := make([]byte, 32)
	rand.Read(key)
	if now == nil {
		now = time.Now
	}
	return &Handler{lookup: lookup, key: key, now: now}
}

// ServeHTTP answers one request from the instance at r.RemoteAddr.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	inst, ok := h.lookup.InstanceByAddress(ap.Addr().Unmap())
	if !ok {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if r.URL.Path == "/latest/api/token" {
		h.issueToken(w, r, inst)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if tok := r.Header.Get(HeaderToken); tok != "" {
		if !h.validToken(tok, inst.ID) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	} else if inst.RequireToken {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, ok := document(inst, r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(body)
}

// issueToken answers PUT /latest/api/token. EC2 also refuses token
// requests that carry X-Forwarded-For (a proxy relaying for someone else).
func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, inst Instance) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(HeaderTTL))
	if err != nil || ttl < MinTokenTTL || ttl > MaxTokenTTL {
		http.Error(w, "bad request: "+HeaderTTL+" must be 1 to 21600", http.StatusBadRequest)
		return
	}
	expiry := h.now().Add(time.Duration(ttl) * time.Second)
	w.Header().Set(HeaderTTL, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(h.token(inst.ID, expiry)))
}

// token is base64(expiry seconds ‖ HMAC-SHA256(key, expiry ‖ instance ID)).
func (h *Handler) token(instanceID string, expiry time.Time) string {
	b := make([]byte, 8, 8+sha256.Size)
	binary.BigEndian.PutUint64(b, uint64(expiry.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(b, h.mac(b, instanceID)...))
}

func (h *Handler) mac(expiry []byte, instanceID string) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write(expiry)
	m.Write([]byte(instanceID))
	return m.Sum(nil)
}

func (h *Handler) validToken(tok, instanceID string) bool {
	// Strict: the unused low bits of the last character must be zero, so
	// one token has one spelling.
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(b[8:], h.mac(b[:8], instanceID)) {
		return false
	}
	return h.now().Unix() < int64(binary.BigEndian.Uint64(b[:8]))
}

// document returns the text at a metadata path. Directory listings end
// their entries that are directories with "/", as EC2's do.
func document(inst Instance, path string) ([]byte, bool) {
	keyNames := make([]string, 0, len(inst.PublicKeys))
	for k := range inst.PublicKeys {
		keyNames = append(keyNames, k)
	}
	sort.Strings(keyNames)
	leaves := map[string]string{
		"instance-id":                    inst.ID,
		"instance-type":                  inst.Type,
		"local-ipv4":                     inst.LocalIPv4.String(),
		"hostname":                       inst.Hostname,
		"local-hostname":                 inst.Hostname,
		"mac":                            inst.MAC,
		"placement/availability-zone":    inst.AvailabilityZone,
		"placement/":                     "availability-zone",
		"public-keys/":                   "",
		"":                               "hostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\nplacement/\npublic-keys/",
		"services/":                      "",
		"placement/availability-zone-id": inst.AvailabilityZone,
	}
	var listing []string
	for i, name := range keyNames {
		listing = append(listing, fmt.Sprintf("%d=%s", i, name))
		leaves[fmt.Sprintf("public-keys/%d/", i)] = "openssh-key"
		leaves[fmt.Sprintf("public-keys/%d/openssh-key", i)] = inst.PublicKeys[name]
	}
	leaves["public-keys/"] = strings.Join(listing, "\n")
	switch {
	case path == "/latest/user-data":
		if inst.UserData == nil {
			return nil, false
		}
		return inst.UserData, true
	case path == "/latest/" || path == "/latest":
		return []byte("dynamic\nmeta-data/\nuser-data"), true
	case strings.HasPrefix(path, "/latest/meta-data/"):
		v, ok := leaves[strings.TrimPrefix(path, "/latest/meta-data/")]
		if !ok || v == "" && path != "/latest/meta-data/public-keys/" {
			return nil, false
		}
		return []byte(v), true
	}
	return nil, false
}

// Server is the metadata service of one VPC.
type Server struct {
	http *http.Server
	done chan error
}

// Start listens on 169.254.169.254:80 inside the VPC (the address is on
// its bridge) and serves h until Close.
func Start(v *vpc.VPC, h http.Handler) (*Server, error) {
	var ln net.Listener
	err := v.Do(func() error {
		l, err := net.Listen("tcp4", netip.AddrPortFrom(vpc.MetadataAddr, 80).String())
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("metadata service in VPC %s: listen: %w", v.ID(), err)
	}
	s := &Server{
		http: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.http.Serve(ln) }()
	return s, nil
}

// Close stops listening, closes open connections and waits for the serve
// loop to end.
func (s *Server) Close() error {
	err := s.http.Close()
	if serveErr := <-s.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("close metadata service: %w", err)
	}
	return nil
}
