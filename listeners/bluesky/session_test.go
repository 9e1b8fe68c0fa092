package bluesky

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
)

func TestSessionRefreshPersisted(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)
	before := storedTestSession(t, kv)

	f.expireAccess()
	f.add(mentions(1, 1)...)
	mustPoll(t, l, host)

	if got := f.callCount("com.atproto.server.refreshSession"); got != 1 {
		t.Errorf("refreshSession called %d times, want 1", got)
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times, want 1", got)
	}
	if got := len(host.delivered()); got != 1 {
		t.Errorf("delivered %d events after the refresh, want 1", got)
	}
	after := storedTestSession(t, kv)
	if after.AccessJwt != f.currentAccessToken() {
		t.Errorf("stored access token %q, want the refreshed %q", after.AccessJwt, f.currentAccessToken())
	}
	if after.RefreshJwt == before.RefreshJwt {
		t.Error("stored refresh token did not change after the refresh")
	}

	// A restart resumes the refreshed session without a login.
	restarted := newTestListener(t, newTestConfig(f))
	mustPoll(t, restarted, newFakeHost(t, kv))
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times after restart, want 1", got)
	}
}

func TestSessionLogsInAgainWhenRefreshFails(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	mustPoll(t, newTestListener(t, newTestConfig(f)), newFakeHost(t, kv))

	// After a restart, the stored session no longer refreshes.
	f.revokeSession()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	l.loginInterval = 200 * time.Millisecond
	mustPoll(t, l, host)
	if got := f.callCount(methodCreateSession); got != 2 {
		t.Fatalf("createSession called %d times, want 2", got)
	}
	if got := storedTestSession(t, kv).AccessJwt; got != f.currentAccessToken() {
		t.Errorf("stored access token %q, want the new login's %q", got, f.currentAccessToken())
	}

	// A second revocation within loginInterval waits for the next login.
	f.revokeSession()
	err := pollStored(context.Background(), l, host)
	if !errors.Is(err, listeners.ErrAuth) {
		t.Fatalf("poll error = %v, want one wrapping ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "next login try at") {
		t.Errorf("poll error %q does not name the next login try", err)
	}
	if got := f.callCount(methodCreateSession); got != 2 {
		t.Errorf("createSession called %d times within loginInterval, want still 2", got)
	}

	// After loginInterval the same Listener logs in again and recovers.
	time.Sleep(l.loginInterval)
	f.add(mentions(1, 1)...)
	mustPoll(t, l, host)
	if got := f.callCount(methodCreateSession); got != 3 {
		t.Errorf("createSession called %d times after loginInterval, want 3", got)
	}
	if got := len(host.delivered()); got != 1 {
		t.Errorf("delivered %d events after the new login, want 1", got)
	}
}

func TestSessionRefreshedAfter401(t *testing.T) {
	f := newFakeServer(t, false)
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	f.rejectStaleWith401()
	f.expireAccess()
	mustPoll(t, l, host)

	if got := f.callCount("com.atproto.server.refreshSession"); got != 1 {
		t.Errorf("refreshSession called %d times, want 1", got)
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times, want 1: a refresh is enough", got)
	}
}

func TestSendWithinLoginIntervalFailsFast(t *testing.T) {
	f := newFakeServer(t, false)
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, wrongPasswordConfig(f))

	if err := l.Run(context.Background(), host); !errors.Is(err, listeners.ErrAuth) {
		t.Fatalf("Run error = %v, want one wrapping ErrAuth", err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		err := l.Send(context.Background(), "", "hello")
		if !errors.Is(err, listeners.ErrAuth) {
			t.Fatalf("Send %d error = %v, want one wrapping ErrAuth", attempt, err)
		}
		if !strings.Contains(err.Error(), "next login try at") {
			t.Errorf("Send %d error %q does not name the next login try", attempt, err)
		}
		if !strings.HasPrefix(err.Error(), "log in as "+testHandle) {
			t.Errorf("Send %d error %q does not start with the login", attempt, err)
		}
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times, want 1", got)
	}
}

// wrongPasswordConfig returns a listener config aimed at f whose app
// password f rejects.
func wrongPasswordConfig(f *fakeServer) *config.Listener {
	cfg := newTestConfig(f)
	wrong := config.NewSecret("not-the-password", "inline")
	cfg.Bluesky.Password = &wrong
	return cfg
}

func TestLoginWrongPasswordIsErrAuth(t *testing.T) {
	f := newFakeServer(t, false)
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, wrongPasswordConfig(f))
	l.loginInterval = 200 * time.Millisecond

	for attempt := 1; attempt <= 2; attempt++ {
		err := l.Run(context.Background(), host)
		if !errors.Is(err, listeners.ErrAuth) {
			t.Fatalf("Run %d error = %v, want one wrapping ErrAuth", attempt, err)
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("Run %d error contains the password: %v", attempt, err)
		}
		if !strings.HasPrefix(err.Error(), "log in as "+testHandle) {
			t.Errorf("Run %d error %q does not start with the login", attempt, err)
		}
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times over two runs, want 1", got)
	}
	if got := host.readyCount(); got != 0 {
		t.Errorf("Ready called %d times, want 0", got)
	}

	// After loginInterval, the next Run sends the login again.
	time.Sleep(l.loginInterval)
	if err := l.Run(context.Background(), host); !errors.Is(err, listeners.ErrAuth) {
		t.Fatalf("Run after loginInterval error = %v, want one wrapping ErrAuth", err)
	}
	if got := f.callCount(methodCreateSession); got != 2 {
		t.Errorf("createSession called %d times after loginInterval, want 2", got)
	}
}

func TestLoginUsesPDSFromDIDDocument(t *testing.T) {
	f := newFakeServer(t, true)
	kv := newFakeKV()
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, newFakeHost(t, kv))

	if got := f.servedCount("entry", methodCreateSession); got != 1 {
		t.Errorf("entryway served createSession %d times, want 1", got)
	}
	if got := f.servedCount("pds", methodListNotifications); got != 1 {
		t.Errorf("PDS served listNotifications %d times, want 1", got)
	}
	if got := f.servedCount("entry", methodListNotifications); got != 0 {
		t.Errorf("entryway served listNotifications %d times, want 0", got)
	}
	if got := storedTestSession(t, kv).PDS; got != f.pds.URL {
		t.Errorf("stored PDS = %q, want %q", got, f.pds.URL)
	}
}

func TestLogsOmitTokensAndPassword(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)
	f.expireAccess()
	mustPoll(t, l, host)
	f.revokeSession()
	mustPoll(t, newTestListener(t, newTestConfig(f)), host)

	logs := host.logs.String()
	if !strings.Contains(logs, "refreshed bluesky session") {
		t.Fatalf("the test did not exercise a refresh; logs:\n%s", logs)
	}
	for _, secret := range []string{"jwt-", testPassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

func TestRateLimitWaitedOut(t *testing.T) {
	f := newFakeServer(t, false)
	// Notification 0 is older than the mark, so one page reaches it.
	f.add(mentions(0, 1)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	reset := time.Unix(time.Now().Add(time.Second).Unix(), 0)
	f.rateLimit(1, reset)
	f.add(mentions(2, 2)...)
	before := f.callCount(methodListNotifications)
	mustPoll(t, l, host)

	if now := time.Now(); now.Before(reset) {
		t.Errorf("poll finished at %v, before the reset at %v", now, reset)
	}
	if got := f.callCount(methodListNotifications) - before; got != 2 {
		t.Errorf("poll sent %d requests, want 2 (the limited one and its retry)", got)
	}
	if got := len(host.delivered()); got != 1 {
		t.Errorf("delivered %d events, want 1", got)
	}
}

func TestRateLimitReset(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   time.Time
	}{
		{"ratelimit-reset", http.Header{"Ratelimit-Reset": {"1772366460"}}, time.Unix(1772366460, 0)},
		{"retry-after seconds", http.Header{"Retry-After": {"7"}}, now.Add(7 * time.Second)},
		{"retry-after date", http.Header{"Retry-After": {"Sun, 01 Mar 2026 12:05:00 GMT"}}, now.Add(5 * time.Minute)},
		{"no header", http.Header{}, now.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rateLimitReset(tt.header, now, time.Minute); !got.Equal(tt.want) {
				t.Errorf("rateLimitReset = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRunServerErrorReturnsError(t *testing.T) {
	f := newFakeServer(t, false)
	f.fail(1)
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))

	err := l.Run(context.Background(), host)
	if err == nil {
		t.Fatal("Run returned nil on a 502")
	}
	if errors.Is(err, listeners.ErrAuth) {
		t.Errorf("Run error %v wraps ErrAuth, want a plain error", err)
	}
	if !strings.Contains(err.Error(), "502") {
		t.Errorf("Run error %q does not name the status", err)
	}
	if got := host.readyCount(); got != 0 {
		t.Errorf("Ready called %d times, want 0", got)
	}
}

func TestRunOversizedResponseReturnsError(t *testing.T) {
	f := newFakeServer(t, false)
	f.serveOversized()
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))

	// Without the cap the first poll succeeds and Run would poll until
	// ctx ends, so ctx ends as soon as Run calls Ready. The timeout only
	// bounds a hung Run. It is long because sending and reading the
	// 16 MiB body under the race detector takes several seconds on a
	// busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		for ctx.Err() == nil && host.readyCount() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	err := l.Run(ctx, host)
	if !errors.Is(err, errResponseTooLarge) {
		t.Fatalf("Run error = %v, want one wrapping errResponseTooLarge", err)
	}
	if errors.Is(err, listeners.ErrAuth) {
		t.Errorf("Run error %v wraps ErrAuth, want a plain error that backs off", err)
	}
	if got := host.readyCount(); got != 0 {
		t.Errorf("Ready called %d times, want 0", got)
	}
}

func TestLimitedBodyAtAndOverLimit(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error
	}{
		{"under", "abc", nil},
		{"at", "abcd", nil},
		{"over", "abcde", errResponseTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &limitedBody{body: io.NopCloser(strings.NewReader(tt.body)), left: 4}
			data, err := io.ReadAll(body)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadAll error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && string(data) != tt.body {
				t.Errorf("ReadAll = %q, want %q", data, tt.body)
			}
		})
	}
}

func TestRunFarRateLimitBacksOff(t *testing.T) {
	f := newFakeServer(t, false)
	f.rateLimit(1, time.Now().Add(999*time.Hour))
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))
	l.maxRateWait = 300 * time.Millisecond

	// Without the pause, Run would wait for the reset until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.Run(ctx, host)
	if !errors.Is(err, errRateLimited) {
		t.Fatalf("Run error = %v, want one wrapping errRateLimited", err)
	}
	if errors.Is(err, listeners.ErrAuth) {
		t.Errorf("Run error %v wraps ErrAuth, want a plain error that backs off", err)
	}
	var retry *listeners.RetryError
	if !errors.As(err, &retry) {
		t.Errorf("Run error %v carries no retry time, want the end of the pause", err)
	} else if until := time.Until(retry.At); until > l.maxRateWait {
		t.Errorf("retry time is %v away, want at most the %v pause", until, l.maxRateWait)
	}

	// A restart within the pause sends no request.
	if err := l.Run(ctx, host); !errors.Is(err, errRateLimited) {
		t.Errorf("Run within the pause error = %v, want one wrapping errRateLimited", err)
	}
	if got := f.callCount(methodListNotifications); got != 1 {
		t.Errorf("listNotifications called %d times within the pause, want 1", got)
	}

	// The pause ends after maxRateWait, long before the reset.
	time.Sleep(l.maxRateWait)
	startRun(t, l, host)
	waitFor(t, "Ready after the pause", func() bool { return host.readyCount() == 1 })
}

// A server that returns a 429 with a near reset for every request once
// kept the first poll waiting for good, and the listener showed
// as starting, with no error, and healthy.
func TestRunRepeatedNearRateLimitBacksOff(t *testing.T) {
	f := newFakeServer(t, false)
	f.rateLimit(1_000_000, time.Now().Add(-time.Minute))
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))
	l.maxInlineRateWait = 200 * time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.Run(ctx, host)

	if !errors.Is(err, errRateLimited) {
		t.Fatalf("Run error = %v, want one wrapping errRateLimited", err)
	}
	if got := host.readyCount(); got != 0 {
		t.Errorf("Ready called %d times with every request rate limited, want 0", got)
	}
}

func TestRunStopsOnCancelDuringRateLimitWait(t *testing.T) {
	f := newFakeServer(t, false)
	f.rateLimit(1, time.Now().Add(time.Hour))
	l := newTestListener(t, newTestConfig(f))
	l.maxInlineRateWait = 2 * time.Hour

	run := startRun(t, l, newFakeHost(t, newFakeKV()))
	waitFor(t, "the rate-limited request", func() bool {
		return f.callCount(methodListNotifications) == 1
	})
	if err := run.stop(t); err != nil {
		t.Errorf("Run returned %v, want nil after cancel", err)
	}
}

func TestRunStopsOnCancelBetweenPolls(t *testing.T) {
	f := newFakeServer(t, false)
	cfg := newTestConfig(f)
	cfg.Bluesky.Poll = time.Hour
	host := newFakeHost(t, newFakeKV())

	run := startRun(t, newTestListener(t, cfg), host)
	waitFor(t, "Ready", func() bool { return host.readyCount() == 1 })
	if err := run.stop(t); err != nil {
		t.Errorf("Run returned %v, want nil after cancel", err)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	password := config.NewSecret(testPassword, "inline")
	tests := []struct {
		name     string
		settings *config.Bluesky
		want     string
	}{
		{"no settings", nil, "missing bluesky settings"},
		{"no handle", &config.Bluesky{Password: &password}, "missing handle"},
		{"no password", &config.Bluesky{Handle: testHandle}, "missing app password"},
		{"bad host", &config.Bluesky{Handle: testHandle, Password: &password, Host: "bsky.social"}, "invalid host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&config.Listener{Name: "bsky", Kind: config.KindBluesky, Bluesky: tt.settings})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	password := config.NewSecret(testPassword, "inline")
	l, err := New(&config.Listener{Name: "bsky", Bluesky: &config.Bluesky{Handle: testHandle, Password: &password}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if l.host != defaultHost {
		t.Errorf("host = %q, want %q", l.host, defaultHost)
	}
	if l.poll != defaultPoll {
		t.Errorf("poll = %v, want %v", l.poll, defaultPoll)
	}
	if len(l.reasons) != len(defaultReasons) {
		t.Errorf("reasons = %v, want %v", l.reasons, defaultReasons)
	}
}

func TestSessionRefreshedOnceByTwoRequests(t *testing.T) {
	f := newFakeServer(t, false)
	l, _ := startedListener(t, f)
	f.rejectStaleWith401()
	f.expireAccess()

	calls := 0
	err := l.withSession(context.Background(), func(client *atclient.APIClient) error {
		calls++
		if calls > 1 {
			var page listNotificationsOutput
			return l.call(context.Background(), client, http.MethodGet, methodListNotifications, nil, nil, &page)
		}
		// Another request refreshes the session while this one is out,
		// and this one then gets the server's rejection of its token.
		if err := l.refresh(context.Background(), client, refreshToken(client)); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		return &atclient.APIError{StatusCode: http.StatusUnauthorized, Name: "InvalidToken"}
	})
	if err != nil {
		t.Fatalf("withSession: %v", err)
	}
	if got := f.callCount("com.atproto.server.refreshSession"); got != 1 {
		t.Errorf("refreshSession called %d times, want 1: the tokens of the other request's refresh are new", got)
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times, want 1", got)
	}
}
