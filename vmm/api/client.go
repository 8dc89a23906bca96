package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"gureum/vmm/api/http1"
)

// Client talks to one gureum-vmm over its unix socket. It makes one
// connection per call (vmm/api/http1), so it holds nothing open between
// calls and is safe for concurrent use.
type Client struct {
	path    string
	timeout time.Duration
}

// NewClient returns a client for the socket at path. A call that gets no
// answer within 30 s fails (on top of its context's deadline).
func NewClient(path string) *Client {
	return &Client{path: path, timeout: 30 * time.Second}
}

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Error_ Error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Error_.Code, e.Error_.Message, e.Status)
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.path)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	status, resp, err := http1.Do(ctx, c.dial, method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status/100 != 2 {
		e := &APIError{Status: status}
		if json.Unmarshal(resp, &e.Error_) != nil || e.Error_.Code == "" {
			e.Error_ = Error{Code: CodeInternal, Message: fmt.Sprintf("HTTP %d: %.200s", status, resp)}
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// VM returns the VM's state.
func (c *Client) VM(ctx context.Context) (VMInfo, error) {
	var v VMInfo
	err := c.do(ctx, "GET", PathVM, nil, &v)
	return v, err
}

// Action performs an action (pause, resume, shutdown, reboot, stop,
// ctrl_alt_del).
func (c *Client) Action(ctx context.Context, r ActionRequest) error {
	return c.do(ctx, "PUT", PathActions, r, nil)
}

// Metrics returns the VM's counters.
func (c *Client) Metrics(ctx context.Context) (Metrics, error) {
	var m Metrics
	err := c.do(ctx, "GET", PathMetrics, nil, &m)
	return m, err
}
