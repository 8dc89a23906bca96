package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is an EC2-style error code. Codes are part of the API: clients
// branch on them, so a code never changes its meaning once published.
type Code string

// Error codes. Each code's HTTP status is in codeStatus below and nowhere
// else; handlers call Code.HTTPStatus instead of choosing a status.
const (
	// Request problems (the caller can fix them).
	CodeInvalidParameterValue Code = "InvalidParameterValue"
	CodeMissingParameter      Code = "MissingParameter"
	// CodeInvalidRequest is a body that is not valid JSON or not the
	// expected shape (EC2 answers an unparsable request with InvalidRequest).
	CodeInvalidRequest             Code = "InvalidRequest"
	CodeUnsupported                Code = "Unsupported"
	CodeInvalidInstanceIDMalformed Code = "InvalidInstanceID.Malformed"
	CodeInvalidVolumeIDMalformed   Code = "InvalidVolumeID.Malformed"
	CodeInvalidSnapshotIDMalformed Code = "InvalidSnapshotID.Malformed"
	CodeInvalidAMIIDMalformed      Code = "InvalidAMIID.Malformed"
	// Network requests (docs/networking.md): a subnet outside its VPC's
	// CIDR, one overlapping another subnet, a rule already there.
	CodeInvalidSubnetRange        Code = "InvalidSubnet.Range"
	CodeInvalidSubnetConflict     Code = "InvalidSubnet.Conflict"
	CodeInvalidPermissionDup      Code = "InvalidPermission.Duplicate"
	CodeInvalidGroupDuplicate     Code = "InvalidGroup.Duplicate"
	CodeInvalidVolumeZoneMismatch Code = "InvalidVolume.ZoneMismatch"

	// Identity and permission.
	CodeAuthFailure           Code = "AuthFailure"
	CodeUnauthorizedOperation Code = "UnauthorizedOperation"

	// Resources that do not exist (or that the caller may not see: EC2
	// answers NotFound rather than revealing another account's resource).
	CodeInvalidInstanceIDNotFound Code = "InvalidInstanceID.NotFound"
	CodeInvalidAMIIDNotFound      Code = "InvalidAMIID.NotFound"
	CodeInvalidVolumeNotFound     Code = "InvalidVolume.NotFound"
	CodeInvalidSnapshotNotFound   Code = "InvalidSnapshot.NotFound"
	CodeInvalidVpcIDNotFound      Code = "InvalidVpcID.NotFound"
	CodeInvalidSubnetIDNotFound   Code = "InvalidSubnetID.NotFound"
	CodeInvalidGroupNotFound      Code = "InvalidGroup.NotFound"
	CodeInvalidPermissionNotFound Code = "InvalidPermission.NotFound"

	// The resource exists but its state forbids the request.
	CodeIncorrectInstanceState Code = "IncorrectInstanceState"
	CodeVolumeInUse            Code = "VolumeInUse"
	// CodeInvalidSnapshotInUse is a snapshot that cannot be deleted because
	// a registered AMI boots from it (deregister the AMI first).
	CodeInvalidSnapshotInUse Code = "InvalidSnapshot.InUse"
	// CodeIncorrectState is a volume or snapshot whose state forbids the
	// request (EC2's IncorrectState).
	CodeIncorrectState Code = "IncorrectState"
	// CodeDependencyViolation is a VPC, subnet or security group that
	// something still uses; CodeInvalidIPAddressInUse an address taken.
	CodeDependencyViolation   Code = "DependencyViolation"
	CodeInvalidIPAddressInUse Code = "InvalidIPAddress.InUse"
	CodeCannotDelete          Code = "CannotDelete"
	CodeInsufficientAddresses Code = "InsufficientFreeAddressesInSubnet"

	// The host cannot serve the request now.
	CodeInsufficientInstanceCapacity Code = "InsufficientInstanceCapacity"

	// The daemon failed; the request may be retried.
	CodeInternalError Code = "InternalError"
)

// codeStatus is the one table from error code to HTTP status.
var codeStatus = map[Code]int{
	CodeInvalidParameterValue:      http.StatusBadRequest,
	CodeMissingParameter:           http.StatusBadRequest,
	CodeInvalidRequest:             http.StatusBadRequest,
	CodeUnsupported:                http.StatusBadRequest,
	CodeInvalidInstanceIDMalformed: http.StatusBadRequest,
	CodeInvalidVolumeIDMalformed:   http.StatusBadRequest,
	CodeInvalidSnapshotIDMalformed: http.StatusBadRequest,
	CodeInvalidAMIIDMalformed:      http.StatusBadRequest,
	CodeInvalidSubnetRange:         http.StatusBadRequest,
	CodeInvalidSubnetConflict:      http.StatusBadRequest,
	CodeInvalidPermissionDup:       http.StatusBadRequest,
	CodeInvalidGroupDuplicate:      http.StatusBadRequest,
	CodeInvalidVolumeZoneMismatch:  http.StatusBadRequest,

	CodeAuthFailure:           http.StatusUnauthorized,
	CodeUnauthorizedOperation: http.StatusForbidden,

	CodeInvalidInstanceIDNotFound: http.StatusNotFound,
	CodeInvalidAMIIDNotFound:      http.StatusNotFound,
	CodeInvalidVolumeNotFound:     http.StatusNotFound,
	CodeInvalidSnapshotNotFound:   http.StatusNotFound,
	CodeInvalidVpcIDNotFound:      http.StatusNotFound,
	CodeInvalidSubnetIDNotFound:   http.StatusNotFound,
	CodeInvalidGroupNotFound:      http.StatusNotFound,
	CodeInvalidPermissionNotFound: http.StatusNotFound,

	CodeIncorrectInstanceState: http.StatusConflict,
	CodeVolumeInUse:            http.StatusConflict,
	CodeInvalidSnapshotInUse:   http.StatusConflict,
	CodeIncorrectState:         http.StatusConflict,
	CodeDependencyViolation:    http.StatusConflict,
	CodeInvalidIPAddressInUse:  http.StatusConflict,
	CodeCannotDelete:           http.StatusConflict,
	CodeInsufficientAddresses:  http.StatusServiceUnavailable,

	CodeInsufficientInstanceCapacity: http.StatusServiceUnavailable,

	CodeInternalError: http.StatusInternalServerError,
}

// Codes lists every error code the API defines, for documentation and for
// tests that check each one has a status.
func Codes() []Code {
	codes := make([]Code, 0, len(codeStatus))
	for c := range codeStatus {
		codes = append(codes, c)
	}
	return codes
}

// HTTPStatus is the status a response carrying this code has. An unknown
// code is a bug in the daemon, reported as 500 so that it is not mistaken
// for the caller's fault.
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the body of every non-2xx answer: {"code": ..., "message": ...}.
// It is also a Go error, so the control plane can return it up to the
// handler, which writes it unchanged.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error formats as EC2's CLI does: "Error (Code): message".
func (e *Error) Error() string {
	return fmt.Sprintf("Error (%s): %s", e.Code, e.Message)
}

// CodeOf finds the *Error in err's chain and returns its code, or
// CodeInternalError when err carries none (an unclassified failure is the
// daemon's, never the caller's).
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternalError
}
