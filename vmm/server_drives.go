package vmm

import (
	"errors"

	"gureum/vmm/api"
	"gureum/vmm/api/http1"
)

// Drive endpoints (docs/vmm-api.md, "Drives"). Each handler decodes and
// checks its body before looking the drive up, and the VM methods check
// everything they can before changing anything, so a refused request
// leaves the drive as it was.

// maxDriveBody bounds a drive request's JSON body.
const maxDriveBody = 16 << 10

func (s *Server) getDrives(*http1.Request, string) http1.Response {
	return jsonResponse(200, s.vm.Drives())
}

func (s *Server) getDrive(_ *http1.Request, id string) http1.Response {
	info, err := s.vm.Drive(id)
	return driveResult(info, err)
}

func (s *Server) putDrive(r *http1.Request, id string) http1.Response {
	var req api.DriveAttach
	if bad, ok := decodeBody(r, maxDriveBody, "bad request body", &req); !ok {
		return bad
	}
	info, err := s.vm.AttachDrive(id, req)
	return driveResult(info, err)
}

func (s *Server) patchDrive(r *http1.Request, id string) http1.Response {
	var req api.DriveUpdate
	if bad, ok := decodeBody(r, maxDriveBody, "bad request body", &req); !ok {
		return bad
	}
	info, err := s.vm.UpdateDrive(id, req)
	return driveResult(info, err)
}

func (s *Server) deleteDrive(_ *http1.Request, id string) http1.Response {
	if err := s.vm.DetachDrive(id); err != nil {
		return driveError(err)
	}
	return http1.Response{Status: 204}
}

func driveResult(info api.DriveInfo, err error) http1.Response {
	if err != nil {
		return driveError(err)
	}
	return jsonResponse(200, info)
}

func driveError(err error) http1.Response {
	switch {
	case errors.Is(err, ErrNoDrive):
		return errorResponse(404, api.CodeDriveNotFound, err.Error())
	case errors.Is(err, ErrDriveState):
		return errorResponse(409, api.CodeIncorrectState, err.Error())
	case errors.Is(err, ErrInvalidConfig):
		return errorResponse(400, api.CodeInvalidParameter, err.Error())
	default:
		return errorResponse(500, api.CodeInternal, err.Error())
	}
}
