package discord

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
)

func TestRunConnectTimeoutNamesMissingStep(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	silentTCP := "ws://" + acceptOnlyServer(t) + "/gateway"
	cases := []struct {
		name, gatewayURL, missing string
	}{
		{"no upgrade response", silentTCP, "no websocket upgrade response"},
		{"no HELLO", f.muteGatewayURL(), "no HELLO"},
		{"no READY", f.silentGatewayURL(), "no READY or RESUMED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(f)
			cfg.Discord.GatewayURL = tc.gatewayURL
			l := newListener(t, cfg)
			l.timing = shortTiming
			host := newFakeHost(t)
			start := time.Now()
			_, done := startRun(t, l, host)

			want := shortTiming.open + shortTiming.abandon
			result := runEnds(t, done, start, want+2*time.Second)
			if result.err == nil {
				t.Fatal("Run error = nil, want a connect timeout")
			}
			if !strings.Contains(result.err.Error(), tc.missing) {
				t.Errorf("Run error = %v, want it to contain %q", result.err, tc.missing)
			}
			if !strings.Contains(result.err.Error(), tc.gatewayURL) {
				t.Errorf("Run error = %v, want the gateway URL %s in it", result.err, tc.gatewayURL)
			}
			if errors.Is(result.err, listeners.ErrAuth) {
				t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
			}
			select {
			case <-host.ready:
				t.Error("host.Ready was called without READY")
			default:
			}
		})
	}
}

// acceptOnlyServer accepts TCP connections on 127.0.0.1 and never reads
// or writes. It returns its address.
func acceptOnlyServer(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			conns <- conn
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		close(conns)
		for conn := range conns {
			conn.Close()
		}
	})
	return listener.Addr().String()
}
