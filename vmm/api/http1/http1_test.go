package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echo answers with the method, path, query and body it saw.
func echo(r *Request) Response {
	if r.Path == "/empty" {
		return Response{Status: 204}
	}
	return Response{Status: 200, Body: []byte(fmt.Sprintf(`{"m":%q,"p":%q,"q":%q,"b":%q}`, r.Method, r.Path, r.Query, r.Body))}
}

// startServer serves h on a unix socket in a temp dir.
func startServer(t *testing.T, h Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func unixDialer(sock string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
}

// TestServerWithNetHTTPClient checks that a standard client (the kind the
// daemon or a user's tool may use) can talk to the server, several
// requests over one kept-alive connection included.
func TestServerWithNetHTTPClient(t *testing.T) {
	sock := startServer(t, echo)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return unixDialer(sock)(ctx)
	}}}
	for i := range 3 {
		body := fmt.Sprintf(`{"n":%d}`, i)
		resp, err := hc.Post("http://vmm/a/b?x=1", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf(`{"m":"POST","p":"/a/b","q":"x=1","b":%q}`, body)
		if resp.StatusCode != 200 || string(got) != want || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %q (%s), want 200 %q", resp.StatusCode, got, resp.Header.Get("Content-Type"), want)
		}
	}
	resp, err := hc.Get("http://vmm/empty")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
}

// TestServerWithCurl uses curl, which sends "Expect: 100-continue" for
// larger bodies.
func TestServerWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	sock := startServer(t, echo)
	big := strings.Repeat("x", 200<<10)
	cmd := exec.Command(curl, "-sS", "--unix-socket", sock, "-H", "Expect: 100-continue", "-X", "PUT", "--data-binary", "@-", "http://vmm/big")
	cmd.Stdin = strings.NewReader(big)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(`"m":"PUT","p":"/big"`)) || !bytes.Contains(out, []byte(big)) {
		t.Fatalf("curl got %.200q", out)
	}
}

// TestClientWithNetHTTPServer checks Do against a standard server.
func TestClientWithNetHTTPServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/nolen":
			w.(http.Flusher).Flush() // forces chunked: Do refuses it
			io.WriteString(w, "abc")
		case "/none":
			w.WriteHeader(204)
		default:
			w.WriteHeader(409)
			fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	status, body, err := Do(ctx, unixDialer(sock), "PATCH", "/x", []byte(`{"a":1}`))
	if err != nil || status != 409 || string(body) != `PATCH /x {"a":1}` {
		t.Fatalf("Do = %d %q %v", status, body, err)
	}
	if status, body, err := Do(ctx, unixDialer(sock), "GET", "/none", nil); err != nil || status != 204 || len(body) != 0 {
		t.Fatalf("Do 204 = %d %q %v", status, body, err)
	}
	if _, _, err := Do(ctx, unixDialer(sock), "GET", "/nolen", nil); err == nil || !strings.Contains(err.Error(), "Transfer-Encoding") {
		t.Fatalf("chunked response: err %v, want a Transfer-Encoding error", err)
	}
}

// TestDoCancel checks that a cancelled context aborts a call whose server
// never answers.
func TestDoCancel(t *testing.T) {
	sock := startServer(t, func(r *Request) Response {
		time.Sleep(2 * time.Second)
		return Response{Status: 200}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := Do(ctx, unixDialer(sock), "GET", "/", nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v, want DeadlineExceeded at once", err, time.Since(start))
	}
}

// TestBadRequests sends raw bytes and checks the status line and that the
// server closes the connection.
func TestBadRequests(t *testing.T) {
	sock := startServer(t, echo)
	for _, c := range []struct {
		name, raw string
		status    int
	}{
		{"garbage", "hello\r\n\r\n", 400},
		{"no path", "GET  HTTP/1.1\r\n\r\n", 400},
		{"absolute URL", "GET http://x/ HTTP/1.1\r\n\r\n", 400},
		{"HTTP/2", "GET / HTTP/2.0\r\n\r\n", 505},
		{"bad header", "GET / HTTP/1.1\r\nno colon\r\n\r\n", 400},
		{"space in name", "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
		{"negative length", "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
		{"two lengths", "PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"chunked", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"huge body", "PUT / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413},
		{"huge header", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n", 431},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, c.raw)
			got, _ := io.ReadAll(conn) // ends when the server closes
			want := fmt.Sprintf("HTTP/1.1 %d ", c.status)
			if !strings.HasPrefix(string(got), want) || !strings.Contains(string(got), "Connection: close") ||
				!strings.Contains(string(got), `"code":"InvalidRequest"`) {
				t.Fatalf("got %q, want %q… with Connection: close and an error document", got, want)
			}
		})
	}
}

// TestPipelined checks two requests sent at once on one connection,
// the second asking to close.
func TestPipelined(t *testing.T) {
	sock := startServer(t, echo)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /one HTTP/1.1\r\n\r\nPUT /two HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
	r := bufio.NewReader(conn)
	for _, want := range []string{`"p":"/one"`, `"p":"/two","q":"","b":"hi"`} {
		status, body, err := readResponse(r)
		if err != nil || status != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("got %d %q %v, want a body with %s", status, body, err, want)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after an HTTP/1.0 request: %v, want the server to close", err)
	}
}

// FuzzReadRequest: any bytes give a request or an error, never a panic,
// and a request's body is exactly its Content-Length.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"PUT /actions HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n{}{}",
		"GET /x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ReadRequest(bufio.NewReader(bytes.NewReader(data)), io.Discard)
		if err != nil {
			return
		}
		if !strings.HasPrefix(req.Path, "/") || len(req.Body) > MaxRequestBody {
			t.Fatalf("accepted path %q with %d body bytes", req.Path, len(req.Body))
		}
	})
}
