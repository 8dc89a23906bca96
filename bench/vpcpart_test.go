package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // 100 … 1 ms, unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := percentile(d, 50); got != 50*time.Millisecond {
		t.Errorf("median %v, want 50ms", got)
	}
	if got := percentile(d, 99); got != 99*time.Millisecond {
		t.Errorf("p99 %v, want 99ms", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one value %v", got)
	}
}

// TestHTTPLoad runs httpLoad against a local server that answers like the
// test guest, and fails every third request.
func TestHTTPLoad(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "gureum-testguest 10.0.0.2\n")
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

	st, err := httpLoad(context.Background(), client, srv.URL+"/", 3, 30, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.ok != 20 || st.failed != 10 || n.Load() != 30 {
		t.Errorf("ok %d failed %d served %d, want 20, 10, 30", st.ok, st.failed, n.Load())
	}
	if st.firstError == "" || st.perSecond() <= 0 {
		t.Errorf("stats %s, %.0f/s", st, st.perSecond())
	}

	// Nothing succeeds: an error.
	if _, err := httpLoad(context.Background(), client, "http://127.0.0.1:1/", 1, 3, time.Second); err == nil {
		t.Error("every request failed, but no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := httpLoad(ctx, client, srv.URL+"/", 2, 10, time.Second); err == nil {
		t.Error("cancelled context, but no error")
	}
}
