package vmm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gureum/vmm/api"
)

// TestOpenAPIMatchesHandlers checks that every documented operation has a
// handler and that every handler is documented, and that the documented
// JSON fields are the ones the Go types produce.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	vm := &VM{cfg: Config{VCPUs: 1, MemoryMiB: 16}, state: StateCreated, console: NewConsole()}
	h := httpHandler((&Server{vm: vm}).Handler())
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			body := bytes.NewReader([]byte(`{"action":"pause"}`))
			req := httptest.NewRequest(strings.ToUpper(method), path, body)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code == http.StatusNotFound && strings.Contains(rec.Body.String(), "no such endpoint") {
				t.Errorf("%s %s is documented but has no handler", method, path)
			}
		}
	}
	sort.Strings(documented)
	served := []string{"GET " + api.PathMetrics, "GET " + api.PathVM, "PUT " + api.PathActions, "GET " + api.PathDrives}
	for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
		served = append(served, m+" "+api.PathDrives+"/{id}")
	}
	sort.Strings(served)
	if !reflect.DeepEqual(documented, served) {
		t.Errorf("documented %v, served %v", documented, served)
	}
	for schema, typ := range map[string]any{
		"VMInfo": api.VMInfo{}, "EndInfo": api.EndInfo{}, "ActionRequest": api.ActionRequest{},
		"Error": api.Error{}, "Metrics": api.Metrics{}, "VCPUMetrics": api.VCPUMetrics{}, "DeviceMetrics": api.DeviceMetrics{},
		"DriveInfo": api.DriveInfo{}, "DriveLimits": api.DriveLimits{}, "DriveAttach": api.DriveAttach{}, "DriveUpdate": api.DriveUpdate{},
	} {
		want := jsonFields(reflect.TypeOf(typ))
		var got []string
		for p := range doc.Components.Schemas[schema].Properties {
			got = append(got, p)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s documents %v, Go type has %v", schema, got, want)
		}
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// TestActionsFollowLifecycle drives the API through illegal and bad
// requests on a VM that has not booted.
func TestActionsFollowLifecycle(t *testing.T) {
	vm := &VM{cfg: Config{VCPUs: 1, MemoryMiB: 16}, state: StateCreated, console: NewConsole()}
	h := httpHandler((&Server{vm: vm}).Handler())
	put := func(body string) (int, api.Error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", api.PathActions, strings.NewReader(body)))
		var e api.Error
		json.Unmarshal(rec.Body.Bytes(), &e)
		return rec.Code, e
	}
	cases := []struct {
		body string
		code int
		err  string
	}{
		{`{"action":"pause"}`, 409, api.CodeIncorrectState},
		{`{"action":"resume"}`, 409, api.CodeIncorrectState},
		{`{"action":"fly"}`, 400, api.CodeUnknownAction},
		{`{"action":"shutdown","timeout_ms":-1}`, 400, api.CodeInvalidParameter},
		{`{"action":"pause","extra":1}`, 400, api.CodeInvalidParameter},
		{`not json`, 400, api.CodeInvalidParameter},
		{`{"action":"stop"}`, 204, ""},
		{`{"action":"stop"}`, 409, api.CodeIncorrectState},
	}
	for _, c := range cases {
		code, e := put(c.body)
		if code != c.code || e.Code != c.err {
			t.Errorf("PUT %s: got %d %q, want %d %q", c.body, code, e.Code, c.code, c.err)
		}
	}
	if st, end := vm.State(); st != StateStopped || end == nil || end.Kind != EndStopped {
		t.Errorf("after stop: state %s end %+v", st, end)
	}
}

// TestLegalTransitions checks the whole action/state table.
func TestLegalTransitions(t *testing.T) {
	want := map[Action]map[State]bool{
		ActionPause:      {StateRunning: true},
		ActionResume:     {StatePaused: true},
		ActionShutdown:   {StateRunning: true, StatePaused: true},
		ActionReboot:     {StateRunning: true, StatePaused: true},
		ActionStop:       {StateCreated: true, StateRunning: true, StatePaused: true},
		ActionCtrlAltDel: {StateRunning: true},
	}
	for a, states := range legalIn {
		for _, s := range []State{StateCreated, StateRunning, StatePaused, StateStopped} {
			got := false
			for _, l := range states {
				got = got || l == s
			}
			if got != want[a][s] {
				t.Errorf("%s in %s: legal=%v, want %v", a, s, got, want[a][s])
			}
		}
	}
}
