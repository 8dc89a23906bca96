// Package client is the Go client of the gureum daemon's REST API (the
// routes of api/openapi.json). The CLI and the tests use it; errors the
// daemon answers come back as *api.Error with EC2's codes.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gureum/api"
)

// Client talks to one daemon. Its methods may be called concurrently.
type Client struct {
	http  *http.Client
	base  string
	token string
	dial  func(ctx context.Context) (net.Conn, error)
}

// New returns a client of the daemon listening on the unix socket path.
func New(socketPath string) *Client {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}
	return newClient("http://gureum", "", dial)
}

// NewTCP returns a client of a daemon listening on TCP at addr
// (host:port), authenticating with token.
func NewTCP(addr, token string) *Client {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return newClient("http://"+addr, token, dial)
}

func newClient(base, token string, dial func(context.Context) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 8,
	}
	return &Client{http: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, base: base, token: token, dial: dial}
}

// Do sends one request: in (if not nil) as the JSON body, the answer
// decoded into out (if not nil). A non-2xx answer is returned as
// *api.Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("gureum daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			return fmt.Errorf("gureum daemon: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return &e
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// RunInstances launches instances.
func (c *Client) RunInstances(ctx context.Context, req api.RunInstancesRequest) (api.Reservation, error) {
	var out api.Reservation
	err := c.Do(ctx, http.MethodPost, "/v1/instances", req, &out)
	return out, err
}

// Filter selects instances in DescribeInstances.
type Filter struct {
	IDs    []string
	States []string
	Tags   []string // key=value or key
}

// DescribeInstances lists instances matching f.
func (c *Client) DescribeInstances(ctx context.Context, f Filter) ([]api.Instance, error) {
	q := url.Values{}
	for _, id := range f.IDs {
		q.Add("id", id)
	}
	for _, s := range f.States {
		q.Add("state", s)
	}
	for _, t := range f.Tags {
		q.Add("tag", t)
	}
	path := "/v1/instances"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.DescribeInstancesResponse
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.Instances, err
}

// Instance describes one instance.
func (c *Client) Instance(ctx context.Context, id string) (api.Instance, error) {
	var out api.Instance
	err := c.Do(ctx, http.MethodGet, "/v1/instances/"+url.PathEscape(id), nil, &out)
	return out, err
}

func (c *Client) action(ctx context.Context, id, action string, body any) (api.StateChange, error) {
	var out api.StateChange
	err := c.Do(ctx, http.MethodPost, "/v1/instances/"+url.PathEscape(id)+"/"+action, body, &out)
	return out, err
}

// StartInstance starts a stopped instance.
func (c *Client) StartInstance(ctx context.Context, id string) (api.StateChange, error) {
	return c.action(ctx, id, "start", nil)
}

// StopInstance stops an instance.
func (c *Client) StopInstance(ctx context.Context, id string, req api.StopRequest) (api.StateChange, error) {
	return c.action(ctx, id, "stop", req)
}

// RebootInstance reboots an instance.
func (c *Client) RebootInstance(ctx context.Context, id string) (api.StateChange, error) {
	return c.action(ctx, id, "reboot", nil)
}

// TerminateInstance terminates an instance.
func (c *Client) TerminateInstance(ctx context.Context, id string, req api.StopRequest) (api.StateChange, error) {
	return c.action(ctx, id, "terminate", req)
}

// ConsoleOutput returns the tail of an instance's serial console.
func (c *Client) ConsoleOutput(ctx context.Context, id string) (api.ConsoleOutput, error) {
	var out api.ConsoleOutput
	err := c.Do(ctx, http.MethodGet, "/v1/instances/"+url.PathEscape(id)+"/console", nil, &out)
	return out, err
}

// AttachConsole connects to a running instance's serial console: bytes
// written to the connection go to the guest's serial port, bytes read
// come from it. Close the connection to detach.
func (c *Client) AttachConsole(ctx context.Context, id string) (net.Conn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("gureum daemon: %w", err)
	}
	req, _ := http.NewRequest(http.MethodGet, c.base+"/v1/instances/"+url.PathEscape(id)+"/console/attach", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.ConsoleUpgrade)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		var e api.Error
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Code != "" {
			return nil, &e
		}
		return nil, fmt.Errorf("console attach: HTTP %d", resp.StatusCode)
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads first what the response reader had buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// InstanceTypes lists the instance type catalog.
func (c *Client) InstanceTypes(ctx context.Context) ([]api.InstanceTypeInfo, error) {
	var out api.InstanceTypesResponse
	err := c.Do(ctx, http.MethodGet, "/v1/instance-types", nil, &out)
	return out.InstanceTypes, err
}

// Volumes lists volumes.
func (c *Client) Volumes(ctx context.Context) ([]api.Volume, error) {
	var out api.DescribeVolumesResponse
	err := c.Do(ctx, http.MethodGet, "/v1/volumes", nil, &out)
	return out.Volumes, err
}

// Volume describes one volume.
func (c *Client) Volume(ctx context.Context, id string) (api.Volume, error) {
	var out api.Volume
	err := c.Do(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateVolume creates a volume.
func (c *Client) CreateVolume(ctx context.Context, req api.CreateVolumeRequest) (api.Volume, error) {
	var out api.Volume
	err := c.Do(ctx, http.MethodPost, "/v1/volumes", req, &out)
	return out, err
}

// DeleteVolume deletes a volume.
func (c *Client) DeleteVolume(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/volumes/"+url.PathEscape(id), nil, nil)
}

// AttachVolume attaches a volume to a running or stopped instance.
func (c *Client) AttachVolume(ctx context.Context, id string, req api.AttachVolumeRequest) (api.Volume, error) {
	var out api.Volume
	err := c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/attach", req, &out)
	return out, err
}

// DetachVolume detaches a volume from its running or stopped instance.
func (c *Client) DetachVolume(ctx context.Context, id string) (api.Volume, error) {
	var out api.Volume
	err := c.Do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(id)+"/detach", nil, &out)
	return out, err
}

// Snapshots lists snapshots.
func (c *Client) Snapshots(ctx context.Context) ([]api.Snapshot, error) {
	var out api.DescribeSnapshotsResponse
	err := c.Do(ctx, http.MethodGet, "/v1/snapshots", nil, &out)
	return out.Snapshots, err
}

// Snapshot describes one snapshot.
func (c *Client) Snapshot(ctx context.Context, id string) (api.Snapshot, error) {
	var out api.Snapshot
	err := c.Do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateSnapshot snapshots a volume.
func (c *Client) CreateSnapshot(ctx context.Context, req api.CreateSnapshotRequest) (api.Snapshot, error) {
	var out api.Snapshot
	err := c.Do(ctx, http.MethodPost, "/v1/snapshots", req, &out)
	return out, err
}

// DeleteSnapshot deletes a snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(id), nil, nil)
}

// Billing returns usage and cost over [from, to); zero times mean the
// daemon's default (this month until now).
func (c *Client) Billing(ctx context.Context, from, to time.Time) (api.BillingReport, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	path := "/v1/billing"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.BillingReport
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// WaitState polls until every instance is in one of the states, or ctx
// ends. progress, if not nil, is called after each poll.
func (c *Client) WaitState(ctx context.Context, ids []string, states []string, progress func([]api.Instance)) ([]api.Instance, error) {
	for {
		ins, err := c.DescribeInstances(ctx, Filter{IDs: ids})
		if err != nil {
			return ins, err
		}
		if progress != nil {
			progress(ins)
		}
		done := true
		for _, in := range ins {
			ok := false
			for _, s := range states {
				ok = ok || in.State.Name == s
			}
			done = done && ok
		}
		if done {
			return ins, nil
		}
		select {
		case <-ctx.Done():
			return ins, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
