// Package http1 is just enough HTTP/1.1 for the VMM's unix-socket API: a
// server that reads one request at a time per connection, with a
// Content-Length body, and a client that sends one request per connection.
//
// Why not net/http: gureum-vmm runs once per VM, so every resident page of
// it is paid once per VM. Linking net/http (with its HTTP/2, TLS and MIME
// code and their package initialisation) costs about 1.5 MiB of resident
// memory in each VMM process, more than the rest of the VMM's heap; the
// API needs a few JSON requests on a local socket and none of that. The
// daemon and tests may still speak to the socket with net/http or curl:
// this is ordinary HTTP/1.1 (RFC 9112) without chunked bodies.
package http1

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what a peer may send. A request over them is answered with an
// error status and the connection is closed.
const (
	// MaxHeaderBytes bounds the request or status line plus all header
	// lines.
	MaxHeaderBytes = 16 << 10
	// MaxRequestBody bounds a request body (the API's are small JSON
	// documents).
	MaxRequestBody = 1 << 20
	// MaxResponseBody bounds a response body the client accepts.
	MaxResponseBody = 64 << 20
)

// Request is one request as the server read it.
type Request struct {
	Method string
	// Path is the request target's path, without the query.
	Path string
	// Query is what followed '?' in the target, undecoded ("" if none).
	Query string
	// ContentType is the Content-Type header's value, if any.
	ContentType string
	// Body is the whole body (empty without one).
	Body []byte
	// close is true when the peer asked to close after this request
	// (Connection: close, or HTTP/1.0 without keep-alive).
	close bool
}

// Response is what a handler answers.
type Response struct {
	Status int
	// Body is sent with Content-Type: application/json when not empty.
	Body []byte
}

// ProtocolError is a request the server cannot read. Status is the HTTP
// status to answer with.
type ProtocolError struct {
	Status int
	Msg    string
}

func (e *ProtocolError) Error() string { return e.Msg }

func protocolError(status int, format string, args ...any) error {
	return &ProtocolError{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// header is the part of a message head both sides need.
type header struct {
	contentLength  int64 // -1 when absent
	contentType    string
	connection     string // lower case
	expect         string // lower case
	chunked        bool
	transferCoding bool // any Transfer-Encoding at all
}

// readHead reads the start line and the header fields up to the empty
// line, within MaxHeaderBytes. It returns the start line.
func readHead(r *bufio.Reader) (string, header, error) {
	h := header{contentLength: -1}
	budget := MaxHeaderBytes
	start, err := readLine(r, &budget)
	if err != nil {
		return "", h, err
	}
	for {
		line, err := readLine(r, &budget)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", h, err
		}
		if line == "" {
			return start, h, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return "", h, protocolError(400, "malformed header line %q", clip(line))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (h.contentLength >= 0 && h.contentLength != n) {
				return "", h, protocolError(400, "bad Content-Length %q", clip(value))
			}
			h.contentLength = n
		case "content-type":
			h.contentType = value
		case "connection":
			h.connection = strings.ToLower(value)
		case "expect":
			h.expect = strings.ToLower(value)
		case "transfer-encoding":
			h.transferCoding = true
			h.chunked = strings.Contains(strings.ToLower(value), "chunked")
		}
	}
}

// readLine reads one CRLF- (or LF-) terminated line, charging its length
// to budget.
func readLine(r *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		*budget -= len(frag)
		if *budget < 0 {
			return "", protocolError(431, "header larger than %d bytes", MaxHeaderBytes)
		}
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// ReadRequest reads the next request from r, body included. It returns
// io.EOF when the connection ended cleanly before a request began, and a
// *ProtocolError for a request it will not serve. A client that sent
// "Expect: 100-continue" waits for a go-ahead before its body: that interim
// response is written to w (nil: never).
func ReadRequest(r *bufio.Reader, w io.Writer) (*Request, error) {
	start, h, err := readHead(r)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(start, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, protocolError(400, "malformed request line %q", clip(start))
	}
	method, target, proto := parts[0], parts[1], parts[2]
	req := &Request{Method: method, ContentType: h.contentType}
	switch proto {
	case "HTTP/1.1":
		req.close = h.connection == "close"
	case "HTTP/1.0":
		req.close = h.connection != "keep-alive"
	default:
		return nil, protocolError(505, "unsupported protocol %q", clip(proto))
	}
	if !strings.HasPrefix(target, "/") {
		return nil, protocolError(400, "request target %q is not an absolute path", clip(target))
	}
	req.Path, req.Query, _ = strings.Cut(target, "?")
	if h.transferCoding {
		// A body of unknown length: we cannot find the next request.
		return nil, protocolError(501, "Transfer-Encoding is not supported; send Content-Length")
	}
	if h.contentLength > MaxRequestBody {
		return nil, protocolError(413, "body of %d bytes; at most %d", h.contentLength, MaxRequestBody)
	}
	if h.contentLength <= 0 {
		return req, nil
	}
	if h.expect == "100-continue" && w != nil {
		if _, err := io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return nil, err
		}
	}
	req.Body = make([]byte, h.contentLength)
	if _, err := io.ReadFull(r, req.Body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("request body: %w", err)
	}
	return req, nil
}

// statusText names the statuses the API uses; others get a generic text.
func statusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 409:
		return "Conflict"
	case 413:
		return "Content Too Large"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Status " + strconv.Itoa(code)
}

// WriteResponse writes resp as one HTTP/1.1 response. With close it tells
// the peer the connection ends after it.
func WriteResponse(w io.Writer, resp Response, close bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", resp.Status, statusText(resp.Status))
	if len(resp.Body) > 0 {
		b.WriteString("Content-Type: application/json\r\n")
	}
	// 1xx, 204 and 304 responses have no body and no Content-Length.
	if resp.Status >= 200 && resp.Status != 204 && resp.Status != 304 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(resp.Body))
	}
	if close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	buf := append([]byte(b.String()), resp.Body...)
	_, err := w.Write(buf)
	return err
}

// clip shortens peer-supplied text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
