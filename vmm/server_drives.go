package vmm

import (
	"encoding/json"
	"errors"
	"net/http"

	"gureum/vmm/api"
)

// Drive endpoints (docs/vmm-api.md, "Drives"). Each handler decodes and
// checks its body before looking the drive up, and the VM methods check
// everything they can before changing anything, so a refused request
// leaves the drive as it was.

func (s *Server) addDriveRoutes(mux *http.ServeMux) {
	one := api.PathDrives + "/{id}"
	mux.HandleFunc("GET "+api.PathDrives, s.getDrives)
	mux.HandleFunc("GET "+one, s.getDrive)
	mux.HandleFunc("PUT "+one, s.putDrive)
	mux.HandleFunc("PATCH "+one, s.patchDrive)
	mux.HandleFunc("DELETE "+one, s.deleteDrive)
}

func (s *Server) getDrives(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.vm.Drives())
}

func (s *Server) getDrive(w http.ResponseWriter, r *http.Request) {
	info, err := s.vm.Drive(r.PathValue("id"))
	writeDriveResult(w, info, err)
}

func (s *Server) putDrive(w http.ResponseWriter, r *http.Request) {
	var req api.DriveAttach
	if !decodeBody(w, r, &req) {
		return
	}
	info, err := s.vm.AttachDrive(r.PathValue("id"), req)
	writeDriveResult(w, info, err)
}

func (s *Server) patchDrive(w http.ResponseWriter, r *http.Request) {
	var req api.DriveUpdate
	if !decodeBody(w, r, &req) {
		return
	}
	info, err := s.vm.UpdateDrive(r.PathValue("id"), req)
	writeDriveResult(w, info, err)
}

func (s *Server) deleteDrive(w http.ResponseWriter, r *http.Request) {
	if err := s.vm.DetachDrive(r.PathValue("id")); err != nil {
		writeDriveError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeBody reads a small JSON body with no unknown fields, answering 400
// itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeInvalidParameter, "bad request body: "+err.Error())
		return false
	}
	return true
}

func writeDriveResult(w http.ResponseWriter, info api.DriveInfo, err error) {
	if err != nil {
		writeDriveError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func writeDriveError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoDrive):
		writeError(w, http.StatusNotFound, api.CodeDriveNotFound, err.Error())
	case errors.Is(err, ErrDriveState):
		writeError(w, http.StatusConflict, api.CodeIncorrectState, err.Error())
	case errors.Is(err, ErrInvalidConfig):
		writeError(w, http.StatusBadRequest, api.CodeInvalidParameter, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}
