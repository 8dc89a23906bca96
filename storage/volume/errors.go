package volume

import (
	"errors"
	"fmt"
)

// Error codes, as EC2 names them, so the control plane's API can pass them
// on unchanged.
const (
	// InvalidParameterValue: a size, type, IOPS or throughput is out of
	// range, or a request is malformed.
	InvalidParameterValue = "InvalidParameterValue"
	// VolumeNotFound: no volume has that ID.
	VolumeNotFound = "InvalidVolume.NotFound"
	// SnapshotNotFound: no snapshot has that ID.
	SnapshotNotFound = "InvalidSnapshot.NotFound"
	// VolumeInUse: the volume is attached, and the action needs it detached.
	VolumeInUse = "VolumeInUse"
	// IncorrectState: the resource's state does not allow the action.
	IncorrectState = "IncorrectState"
	// InternalError: the host failed (a file could not be written, the
	// VMM did not answer). The resource is left as it was where possible.
	InternalError = "InternalError"
)

// Error is a failure with an EC2 error code. Match it with errors.As, or
// read the code with Code.
type Error struct {
	Code    string
	Message string
	Err     error // the host error behind an InternalError, or nil
}

// Error is "Code: Message".
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the underlying host error.
func (e *Error) Unwrap() error { return e.Err }

func errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// internal wraps a host error as an InternalError with context.
func internal(err error, format string, a ...any) *Error {
	return &Error{Code: InternalError, Message: fmt.Sprintf(format, a...), Err: err}
}

// Code returns the EC2 error code of err, or "" if err carries none.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
