package http1

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

// Handler answers one request. It runs on the connection's goroutine;
// requests on one connection are answered in order.
type Handler func(*Request) Response

// IdleTimeout is how long a connection may wait between requests, and how
// long a started request may take to arrive, before the server closes it.
const IdleTimeout = 60 * time.Second

// Server serves a Handler on a listener.
type Server struct {
	handler Handler

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewServer returns a server for h.
func NewServer(h Handler) *Server {
	return &Server{handler: h, conns: make(map[net.Conn]struct{})}
}

// Serve accepts connections on ln until Close, serving each on its own
// goroutine. It returns nil after Close and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines (and so for handlers under way) to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// serveConn answers requests on c until the peer closes it, asks to close,
// sends something unreadable, or stays idle past IdleTimeout.
func (s *Server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(IdleTimeout))
		req, err := ReadRequest(r, c)
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				WriteResponse(c, Response{Status: pe.Status, Body: errorBody(pe.Msg)}, true)
			}
			return
		}
		c.SetReadDeadline(time.Time{})
		resp := s.handler(req)
		if WriteResponse(c, resp, req.close) != nil || req.close {
			return
		}
	}
}

// errorBody is the API's error document for a request the server could
// not read: {"code": "InvalidRequest", "message": msg}.
func errorBody(msg string) []byte {
	b := []byte(`{"code":"InvalidRequest","message":`)
	b = appendJSONString(b, msg)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}
