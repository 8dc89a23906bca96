package vmm

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"gureum/vmm/api"
)

// Server serves a VM's socket API (docs/vmm-api.md, vmm/api/openapi.yaml).
type Server struct {
	vm  *VM
	srv *http.Server
	ln  net.Listener
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
	s := &Server{vm: vm, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the API and removes nothing else.
func (s *Server) Close() error { return s.srv.Close() }

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathVM, s.getVM)
	mux.HandleFunc("PUT "+api.PathActions, s.putAction)
	mux.HandleFunc("GET "+api.PathMetrics, s.getMetrics)
	s.addDriveRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vm.Info())
}

func (s *Server) putAction(w http.ResponseWriter, r *http.Request) {
	var req api.ActionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeInvalidParameter, "bad action request: "+err.Error())
		return
	}
	if req.TimeoutMS < 0 || req.TimeoutMS > 3600_000 {
		writeError(w, http.StatusBadRequest, api.CodeInvalidParameter, "timeout_ms must be 0..3600000")
		return
	}
	timeout := 10 * time.Second
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	err := s.vm.Do(Action(req.Action), timeout)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrUnknownAction):
		writeError(w, http.StatusBadRequest, api.CodeUnknownAction, err.Error())
	case errors.Is(err, ErrIllegalState):
		writeError(w, http.StatusConflict, api.CodeIncorrectState, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vm.Metrics())
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
