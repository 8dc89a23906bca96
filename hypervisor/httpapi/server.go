// Package httpapi is the daemon's REST API: JSON over HTTP, served on a
// unix socket (whose file permissions are the access control) and
// optionally on TCP with bearer tokens. Each route calls one method of
// hypervisor/service; api/openapi.json documents the same routes, and a
// test checks the two lists are equal.
//
// Every error is written as api.Error with the status its code maps to,
// so clients see EC2's codes ("InvalidInstanceID.NotFound" ...) whatever
// went wrong.
package httpapi

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"gureum/api"
	"gureum/hypervisor/service"
)

// maxBody bounds a request body; anything larger is refused before it is
// read whole.
const maxBody = 1 << 20

// Authenticator decides who a request acts for. The accounts registry
// plugs in here; the defaults are AllowAll (the unix socket) and Tokens
// (TCP).
type Authenticator func(r *http.Request) (service.Caller, error)

// AllowAll makes every request the admin's: for the unix socket, which
// only users with access to its file can reach.
func AllowAll(*http.Request) (service.Caller, error) { return service.Admin, nil }

// Tokens accepts "Authorization: Bearer T" for any T in tokens, as the
// admin account.
func Tokens(tokens []string) Authenticator {
	return func(r *http.Request) (service.Caller, error) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && got != "" {
			for _, t := range tokens {
				if subtle.ConstantTimeCompare([]byte(got), []byte(t)) == 1 {
					return service.Admin, nil
				}
			}
		}
		return service.Caller{}, api.Errorf(api.CodeAuthFailure, "AWS was not able to validate the provided access credentials")
	}
}

// Route is one method and path pattern of the API.
type Route struct {
	Method string
	Path   string // net/http pattern syntax: /v1/instances/{id}
	handle func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error)
}

// Routes lists every route the server serves (for the OpenAPI check).
func Routes() []Route { return routes }

type handler struct {
	svc *service.Service
	log *slog.Logger
}

// New returns the API's handler. auth decides who each request acts for.
func New(svc *service.Service, auth Authenticator, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &handler{svc: svc, log: log}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			caller, err := auth(r)
			if err != nil {
				writeError(w, err)
				return
			}
			start := time.Now()
			out, err := rt.handle(h, w, r, caller)
			if errors.Is(err, errHijacked) {
				return
			}
			if err != nil {
				if api.CodeOf(err) == api.CodeInternalError {
					log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				}
				writeError(w, err)
				return
			}
			if out == nil {
				w.WriteHeader(http.StatusNoContent)
			} else {
				writeJSON(w, http.StatusOK, out)
			}
			log.Debug("request", "method", r.Method, "path", r.URL.Path, "account", caller.AccountID, "took", time.Since(start))
		})
	}
	// Anything else: EC2's answer to an unknown action.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, api.Errorf(api.CodeInvalidRequest, "No route %s %s.", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError writes err as {"code", "message"}. An error without a code
// is the daemon's own failure: InternalError, with the detail kept in
// the log rather than shown.
func writeError(w http.ResponseWriter, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		e = api.Errorf(api.CodeInternalError, "An internal error has occurred: %v", err)
	}
	writeJSON(w, e.Code.HTTPStatus(), e)
}

// decode reads a JSON body into v, refusing unknown fields and trailing
// data: a malformed request changes nothing.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return api.Errorf(api.CodeInvalidRequest, "The request body is empty; a JSON object is expected.")
		}
		return api.Errorf(api.CodeInvalidRequest, "The request body is not valid: %v", err)
	}
	if dec.More() {
		return api.Errorf(api.CodeInvalidRequest, "The request body holds more than one JSON value.")
	}
	return nil
}

// decodeOptional is decode for bodies that may be empty.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(r, v)
}

var errHijacked = errors.New("connection taken over")

var routes = []Route{
	{"GET", "/v1/instances", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		q := r.URL.Query()
		f := service.Filter{IDs: splitList(q["id"]), States: splitList(q["state"]), Tags: q["tag"]}
		out, err := h.svc.Describe(c, f)
		return api.DescribeInstancesResponse{Instances: out}, err
	}},
	{"POST", "/v1/instances", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.RunInstancesRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.RunInstances(r.Context(), c, req)
	}},
	{"GET", "/v1/instances/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Instance(c, r.PathValue("id"))
	}},
	{"POST", "/v1/instances/{id}/start", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		if err := decodeOptional(r, &struct{}{}); err != nil {
			return nil, err
		}
		return h.svc.Start(c, r.PathValue("id"))
	}},
	{"POST", "/v1/instances/{id}/stop", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.StopRequest
		if err := decodeOptional(r, &req); err != nil {
			return nil, err
		}
		return h.svc.Stop(c, r.PathValue("id"), req)
	}},
	{"POST", "/v1/instances/{id}/reboot", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		if err := decodeOptional(r, &struct{}{}); err != nil {
			return nil, err
		}
		return h.svc.Reboot(c, r.PathValue("id"))
	}},
	{"POST", "/v1/instances/{id}/terminate", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.StopRequest
		if err := decodeOptional(r, &req); err != nil {
			return nil, err
		}
		return h.svc.Terminate(c, r.PathValue("id"), req)
	}},
	{"GET", "/v1/instances/{id}/console", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.ConsoleOutput(c, r.PathValue("id"))
	}},
	{"GET", "/v1/instances/{id}/console/attach", attachConsole},
	{"GET", "/v1/instance-types", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return api.InstanceTypesResponse{InstanceTypes: h.svc.InstanceTypes()}, nil
	}},
	{"GET", "/v1/volumes", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		out, err := h.svc.Volumes(c)
		return api.DescribeVolumesResponse{Volumes: out}, err
	}},
	{"POST", "/v1/volumes", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateVolumeRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateVolume(c, req)
	}},
	{"GET", "/v1/volumes/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Volume(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/volumes/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeleteVolume(c, r.PathValue("id"))
	}},
	{"POST", "/v1/volumes/{id}/attach", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.AttachVolumeRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.AttachVolume(c, r.PathValue("id"), req)
	}},
	{"POST", "/v1/volumes/{id}/detach", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		if err := decodeOptional(r, &struct{}{}); err != nil {
			return nil, err
		}
		return h.svc.DetachVolume(c, r.PathValue("id"))
	}},
	{"POST", "/v1/volumes/{id}/modify", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.ModifyVolumeRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.ModifyVolume(c, r.PathValue("id"), req)
	}},
	{"GET", "/v1/snapshots", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		out, err := h.svc.Snapshots(c)
		return api.DescribeSnapshotsResponse{Snapshots: out}, err
	}},
	{"POST", "/v1/snapshots", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		var req api.CreateSnapshotRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return h.svc.CreateSnapshot(c, req)
	}},
	{"GET", "/v1/snapshots/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return h.svc.Snapshot(c, r.PathValue("id"))
	}},
	{"DELETE", "/v1/snapshots/{id}", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		return nil, h.svc.DeleteSnapshot(c, r.PathValue("id"))
	}},
	{"GET", "/v1/billing", func(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
		from, to, err := period(r)
		if err != nil {
			return nil, err
		}
		return h.svc.Billing(c, from, to)
	}},
}

// splitList accepts repeated parameters and comma-separated lists.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// period reads ?from=&to= (RFC 3339); the default is the current
// calendar month up to now.
func period(r *http.Request) (time.Time, time.Time, error) {
	now := time.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	to := now
	for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return from, to, api.Errorf(api.CodeInvalidParameterValue, "Invalid %s time '%s' (RFC 3339 expected).", name, v)
			}
			*dst = t
		}
	}
	return from, to, nil
}

// attachConsole upgrades the connection to a raw byte stream relayed to
// and from the instance's serial console, until either side closes.
func attachConsole(h *handler, w http.ResponseWriter, r *http.Request, c service.Caller) (any, error) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.ConsoleUpgrade) {
		return nil, api.Errorf(api.CodeInvalidRequest, "Console attach needs 'Upgrade: %s'.", api.ConsoleUpgrade)
	}
	console, err := h.svc.AttachConsole(c, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		console.Close()
		return nil, fmt.Errorf("connection cannot be taken over")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		console.Close()
		return nil, err
	}
	fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.ConsoleUpgrade)
	buf.Flush()
	relay(conn, buf.Reader, console)
	return nil, errHijacked
}

// relay copies both ways until one side ends, then closes both.
func relay(client net.Conn, clientBuf *bufio.Reader, console net.Conn) {
	var once sync.Once
	done := make(chan struct{})
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			console.Close()
			close(done)
		})
	}
	go func() {
		io.Copy(console, clientBuf)
		closeBoth()
	}()
	go func() {
		io.Copy(client, console)
		closeBoth()
	}()
	<-done
}
