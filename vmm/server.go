package vmm

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gureum/vmm/api"
	"gureum/vmm/api/http1"
)

// Server serves a VM's socket API (docs/vmm-api.md, vmm/api/openapi.json).
// It speaks HTTP/1.1 through vmm/api/http1 rather than net/http, which
// keeps about 1.5 MiB of code and data out of every VMM process.
type Server struct {
	vm  *VM
	srv *http1.Server
}

// Listen starts the API on a unix socket at path (mode 0600).
func Listen(vm *VM, path string) (*Server, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{vm: vm}
	s.srv = http1.NewServer(s.Handler())
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the API and removes nothing else.
func (s *Server) Close() error { return s.srv.Close() }

// route answers one method on one path; id is the {id} path segment of a
// drive route, or "".
type route func(r *http1.Request, id string) http1.Response

// routes returns the API's routes by path pattern, then by method.
func (s *Server) routes() map[string]map[string]route {
	return map[string]map[string]route{
		api.PathVM:      {"GET": s.getVM},
		api.PathActions: {"PUT": s.putAction},
		api.PathMetrics: {"GET": s.getMetrics},
		api.PathDrives:  {"GET": s.getDrives},
		api.PathDrives + "/{id}": {
			"GET": s.getDrive, "PUT": s.putDrive, "PATCH": s.patchDrive, "DELETE": s.deleteDrive,
		},
	}
}

// Handler returns the API's request handler: it matches the path (a
// drive's id is one escaped path segment), then the method.
func (s *Server) Handler() http1.Handler {
	table := s.routes()
	return func(r *http1.Request) http1.Response {
		pattern, id := r.Path, ""
		if rest, ok := strings.CutPrefix(r.Path, api.PathDrives+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			unescaped, err := url.PathUnescape(rest)
			if err != nil {
				return errorResponse(400, api.CodeInvalidParameter, "bad drive id in path: "+err.Error())
			}
			pattern, id = api.PathDrives+"/{id}", unescaped
		}
		methods, ok := table[pattern]
		if !ok {
			return errorResponse(404, api.CodeNotFound, "no such endpoint: "+r.Method+" "+r.Path)
		}
		h, ok := methods[r.Method]
		if !ok {
			return errorResponse(405, api.CodeInvalidParameter, "method "+r.Method+" not allowed on "+r.Path)
		}
		return h(r, id)
	}
}

// jsonResponse encodes v as the body of a response with the given status.
func jsonResponse(status int, v any) http1.Response {
	b, err := json.Marshal(v)
	if err != nil {
		return errorResponse(500, api.CodeInternal, "encode response: "+err.Error())
	}
	return http1.Response{Status: status, Body: append(b, '\n')}
}

func errorResponse(status int, code, msg string) http1.Response {
	return jsonResponse(status, api.Error{Code: code, Message: msg})
}

// decodeBody decodes a JSON body of at most limit bytes with no unknown
// fields into v; on failure it returns the 400 answer to send, its message
// starting with what ("bad action request").
func decodeBody(r *http1.Request, limit int, what string, v any) (http1.Response, bool) {
	if len(r.Body) > limit {
		return errorResponse(400, api.CodeInvalidParameter, what+": body over "+strconv.Itoa(limit)+" bytes"), false
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorResponse(400, api.CodeInvalidParameter, what+": "+err.Error()), false
	}
	return http1.Response{}, true
}

func (s *Server) getVM(*http1.Request, string) http1.Response {
	return jsonResponse(200, s.vm.Info())
}

func (s *Server) putAction(r *http1.Request, _ string) http1.Response {
	var req api.ActionRequest
	if bad, ok := decodeBody(r, 4096, "bad action request", &req); !ok {
		return bad
	}
	if req.TimeoutMS < 0 || req.TimeoutMS > 3600_000 {
		return errorResponse(400, api.CodeInvalidParameter, "timeout_ms must be 0..3600000")
	}
	timeout := 10 * time.Second
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	err := s.vm.Do(Action(req.Action), timeout)
	switch {
	case err == nil:
		return http1.Response{Status: 204}
	case errors.Is(err, ErrUnknownAction):
		return errorResponse(400, api.CodeUnknownAction, err.Error())
	case errors.Is(err, ErrIllegalState):
		return errorResponse(409, api.CodeIncorrectState, err.Error())
	default:
		return errorResponse(500, api.CodeInternal, err.Error())
	}
}

func (s *Server) getMetrics(*http1.Request, string) http1.Response {
	return jsonResponse(200, s.vm.Metrics())
}

// Info reports the VM's state for the API.
func (v *VM) Info() api.VMInfo {
	st, end := v.State()
	v.mu.Lock()
	info := api.VMInfo{State: string(st), VCPUs: v.cfg.VCPUs, MemoryMiB: v.cfg.MemoryMiB, BootCount: v.bootCount, StartedAt: v.started}
	v.mu.Unlock()
	if end != nil {
		info.End = &api.EndInfo{Kind: string(end.Kind), Reason: end.Reason, At: end.At}
	}
	return info
}
