package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

func TestEveryCodeHasAClientOrServerStatus(t *testing.T) {
	for _, c := range Codes() {
		s := c.HTTPStatus()
		if s < 400 || s > 599 {
			t.Errorf("%s maps to %d", c, s)
		}
	}
	if got := Code("NoSuchCode").HTTPStatus(); got != http.StatusInternalServerError {
		t.Errorf("unknown code: %d", got)
	}
}

func TestStatusOfNamedCodes(t *testing.T) {
	want := map[Code]int{
		CodeInvalidParameterValue:        400,
		CodeInvalidInstanceIDMalformed:   400,
		CodeMissingParameter:             400,
		CodeUnsupported:                  400,
		CodeAuthFailure:                  401,
		CodeUnauthorizedOperation:        403,
		CodeInvalidInstanceIDNotFound:    404,
		CodeInvalidAMIIDNotFound:         404,
		CodeInvalidVolumeNotFound:        404,
		CodeInvalidSnapshotNotFound:      404,
		CodeIncorrectInstanceState:       409,
		CodeVolumeInUse:                  409,
		CodeInvalidSnapshotInUse:         409,
		CodeInvalidVolumeZoneMismatch:    400,
		CodeInsufficientInstanceCapacity: 503,
		CodeInternalError:                500,
	}
	for c, s := range want {
		if got := c.HTTPStatus(); got != s {
			t.Errorf("%s: status %d, want %d", c, got, s)
		}
	}
}

func TestErrorWireShapeAndChain(t *testing.T) {
	e := Errorf(CodeIncorrectInstanceState, "The instance '%s' is not in a state from which it can be started.", "i-0123456789abcdef0")
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"code":"IncorrectInstanceState","message":"The instance 'i-0123456789abcdef0' is not in a state from which it can be started."}` {
		t.Errorf("wire: %s", b)
	}
	wrapped := fmt.Errorf("start i-0123456789abcdef0: %w", e)
	if CodeOf(wrapped) != CodeIncorrectInstanceState {
		t.Errorf("CodeOf wrapped: %s", CodeOf(wrapped))
	}
	if CodeOf(fmt.Errorf("disk full")) != CodeInternalError {
		t.Error("an unclassified error must be internal")
	}
	if e.Error() != "Error (IncorrectInstanceState): The instance 'i-0123456789abcdef0' is not in a state from which it can be started." {
		t.Errorf("text: %s", e.Error())
	}
}
