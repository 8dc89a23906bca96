package http1

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Do sends one request over a new connection from dial and returns the
// response's status and body. The connection is closed afterwards
// (Connection: close), so there is no pooling to get wrong; the VMM API is
// local and rare enough that a connection per call costs nothing that
// matters. Cancelling ctx aborts the call.
func Do(ctx context.Context, dial func(context.Context) (net.Conn, error), method, path string, body []byte) (int, []byte, error) {
	c, err := dial(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	if _, err := c.Write(append([]byte(b.String()), body...)); err != nil {
		return 0, nil, ctxErr(ctx, err)
	}
	status, respBody, err := readResponse(bufio.NewReader(c))
	return status, respBody, ctxErr(ctx, err)
}

// readResponse reads one response, skipping 1xx interim responses.
func readResponse(r *bufio.Reader) (int, []byte, error) {
	for {
		start, h, err := readHead(r)
		if err != nil {
			return 0, nil, fmt.Errorf("response: %w", err)
		}
		proto, rest, _ := strings.Cut(start, " ")
		codeText, _, _ := strings.Cut(rest, " ")
		status, err := strconv.Atoi(codeText)
		if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || status < 100 || status > 999 {
			return 0, nil, fmt.Errorf("response: malformed status line %q", clip(start))
		}
		if status < 200 {
			continue
		}
		if status == 204 || status == 304 {
			return status, nil, nil
		}
		if h.transferCoding {
			return 0, nil, fmt.Errorf("response: Transfer-Encoding is not supported")
		}
		if h.contentLength > MaxResponseBody {
			return 0, nil, fmt.Errorf("response: body of %d bytes; at most %d", h.contentLength, MaxResponseBody)
		}
		if h.contentLength >= 0 {
			body := make([]byte, h.contentLength)
			if _, err := io.ReadFull(r, body); err != nil {
				return 0, nil, fmt.Errorf("response body: %w", err)
			}
			return status, body, nil
		}
		// No length: the body runs to the end of the connection.
		body, err := io.ReadAll(io.LimitReader(r, MaxResponseBody+1))
		if err != nil {
			return 0, nil, fmt.Errorf("response body: %w", err)
		}
		if len(body) > MaxResponseBody {
			return 0, nil, fmt.Errorf("response: body over %d bytes", MaxResponseBody)
		}
		return status, body, nil
	}
}

// ctxErr prefers the context's error when the call was aborted by it.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
