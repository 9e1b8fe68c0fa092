package bluesky

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/internal/testnet"
	"github.com/agent-runner/agent-runner/listeners"
)

// shortRequestTimeout replaces the 30 s request timeout in these tests.
const shortRequestTimeout = 300 * time.Millisecond

func TestRunTimeoutNamesHostAndCall(t *testing.T) {
	hangingPDS := hangingListServer(t)
	cases := []struct {
		name, host, call string
	}{
		{"login to a silent host", "http://" + testnet.SilentServer(t), methodCreateSession},
		{"poll a hanging PDS", hangingPDS, methodListNotifications},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, false)
			cfg := newTestConfig(f)
			cfg.Bluesky.Host = tc.host
			l := newTestListener(t, cfg)
			l.http.Timeout = shortRequestTimeout
			host := newFakeHost(t, newFakeKV())

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := l.Run(ctx, host)
			elapsed := time.Since(start)

			if err == nil {
				t.Fatal("Run returned nil, want a timeout error")
			}
			if elapsed > 3*time.Second {
				t.Errorf("Run returned after %v, want about the request timeout of %v", elapsed, shortRequestTimeout)
			}
			hostPort := strings.TrimPrefix(tc.host, "http://")
			if !strings.Contains(err.Error(), hostPort) {
				t.Errorf("Run error = %v, want the host %s in it", err, hostPort)
			}
			if !strings.Contains(err.Error(), tc.call) {
				t.Errorf("Run error = %v, want the call %s in it", err, tc.call)
			}
			if !strings.Contains(err.Error(), "no response within "+shortRequestTimeout.String()) {
				t.Errorf("Run error = %v, want %q in it", err, "no response within "+shortRequestTimeout.String())
			}
			if errors.Is(err, listeners.ErrAuth) {
				t.Errorf("Run error = %v, want one not wrapping ErrAuth", err)
			}
			if host.readyCount() != 0 {
				t.Error("host.Ready was called without a successful poll")
			}
		})
	}
}

// hangingListServer is a PDS on 127.0.0.1 that accepts the login and
// sends no response to listNotifications. It returns its URL.
func hangingListServer(t *testing.T) string {
	t.Helper()
	var server *httptest.Server
	server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/xrpc/") {
		case methodCreateSession:
			writeJSON(w, http.StatusOK, map[string]any{
				"accessJwt": "access", "refreshJwt": "refresh",
				"did": testDID, "handle": testHandle, "active": true,
			})
		default:
			<-r.Context().Done()
		}
	}))
	t.Cleanup(server.Close)
	return server.URL
}
