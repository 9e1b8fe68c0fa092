package twitch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

const privmsgLine = "@badge-info=subscriber/8;badges=moderator/1,subscriber/6;client-nonce=abc;color=#1E90FF;" +
	"display-name=Alice_Dev;emotes=;first-msg=1;flags=;id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=1;" +
	"reply-parent-msg-id=6b13e51b-7ecb-43b5-ba5b-2bb5288df696;returning-chatter=0;room-id=1337;subscriber=1;" +
	"tmi-sent-ts=1700000000123;turbo=0;user-id=4242;user-type=mod " +
	":alice_dev!alice_dev@alice_dev.tmi.twitch.tv PRIVMSG #chan :hello there"

func TestRunDeliversMessage(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	startRun(t, l, host)

	conn := server.accept(t)
	if pass := conn.welcome(t); pass != "PASS oauth:s3cret" {
		t.Errorf("got %q, want PASS oauth:s3cret", pass)
	}
	host.waitReady(t)
	conn.expect(t, "JOIN #chan")
	conn.send(t, privmsgLine)

	event := host.nextEvent(t)
	want := listeners.Event{
		Listener: "chat",
		Kind:     "twitch",
		Type:     "message",
		ID:       "b34ccfc7-4977-403a-8a94-33c6bac34fb8",
		Time:     time.UnixMilli(1700000000123).UTC(),
		Channel:  "chan",
		User:     "Alice_Dev",
		UserID:   "4242",
		Text:     "hello there",
	}
	fields := event.Fields
	event.Fields = nil
	if fmt.Sprint(event) != fmt.Sprint(want) {
		t.Errorf("got event %+v, want %+v", event, want)
	}
	wantFields := map[string]string{
		"badges":              "moderator/1,subscriber/6",
		"color":               "#1E90FF",
		"mod":                 "1",
		"subscriber":          "1",
		"first-msg":           "1",
		"reply-parent-msg-id": "6b13e51b-7ecb-43b5-ba5b-2bb5288df696",
		"login":               "alice_dev",
	}
	if fmt.Sprint(fields) != fmt.Sprint(wantFields) {
		t.Errorf("got fields %v, want %v", fields, wantFields)
	}
}

func TestRunDeliversUserNotice(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	conn.send(t,
		`@badge-info=;badges=;color=#8A2BE2;display-name=Bob;emotes=;id=5a1e2f3c;login=bob;mod=0;msg-id=sub;`+
			`msg-param-cumulative-months=1;msg-param-sub-plan=1000;room-id=1337;subscriber=1;`+
			`system-msg=Bob\ssubscribed\sat\sTier\s1.;tmi-sent-ts=1700000000500;user-id=77 :tmi.twitch.tv USERNOTICE #chan`,
		`@badges=;color=;display-name=Raider;id=9f8e7d;login=raider;mod=0;msg-id=raid;msg-param-viewerCount=12;`+
			`room-id=1337;system-msg=12\sraiders\sfrom\sRaider;tmi-sent-ts=1700000000600;user-id=88 :tmi.twitch.tv USERNOTICE #chan`,
	)

	sub := host.nextEvent(t)
	if sub.Type != "usernotice" || sub.ID != "5a1e2f3c" || sub.User != "Bob" || sub.UserID != "77" || sub.Channel != "chan" {
		t.Errorf("got sub event %+v, want type usernotice, id 5a1e2f3c, user Bob (77) in chan", sub)
	}
	if got := sub.Fields["msg-id"]; got != "sub" {
		t.Errorf("got msg-id %q, want sub", got)
	}
	if got := sub.Fields["msg-param-cumulative-months"]; got != "1" {
		t.Errorf("got msg-param-cumulative-months %q, want 1", got)
	}
	if got := sub.Fields["system-msg"]; got != "Bob subscribed at Tier 1." {
		t.Errorf("got system-msg %q, want the unescaped text", got)
	}
	if got := sub.Fields["login"]; got != "bob" {
		t.Errorf("got login %q, want bob", got)
	}
	if !sub.Time.Equal(time.UnixMilli(1700000000500)) {
		t.Errorf("got time %v, want %v", sub.Time, time.UnixMilli(1700000000500))
	}

	raid := host.nextEvent(t)
	if got := raid.Fields["msg-id"]; got != "raid" {
		t.Errorf("got msg-id %q, want raid", got)
	}
	if got := raid.Fields["msg-param-viewerCount"]; got != "12" {
		t.Errorf("got msg-param-viewerCount %q, want 12", got)
	}
}

func TestPasswordAddsOAuthPrefix(t *testing.T) {
	for _, token := range []string{"abc123", "oauth:abc123", "OAuth:abc123", " abc123\n"} {
		l, err := New(testConfig("127.0.0.1:1", token))
		if err != nil {
			t.Fatalf("New with token %q: %v", token, err)
		}
		if got := l.password(); got != "oauth:abc123" {
			t.Errorf("token %q: got password %q, want oauth:abc123", token, got)
		}
	}
}

func TestRunAnonymous(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "", "chan"))
	startRun(t, l, host)

	conn := server.accept(t)
	conn.expect(t, "CAP REQ ")
	conn.expect(t, "PASS ")
	if nick := conn.expect(t, "NICK ").text; !strings.HasPrefix(nick, "NICK justinfan") {
		t.Errorf("got %q, want an anonymous justinfan nick", nick)
	}
	conn.send(t, ":tmi.twitch.tv 001 justinfan123123 :Welcome, GLHF!")
	host.waitReady(t)
	conn.expect(t, "JOIN #chan")

	err := l.Send(context.Background(), "chan", "hi")
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("got Send error %v, want one saying the listener is read-only", err)
	}
}

func TestJoinsThrottled(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	var channels []string
	for i := range 25 {
		channels = append(channels, fmt.Sprintf("chan%02d", i))
	}
	l := newTestListener(t, testConfig(server.addr(), "s3cret", channels...))
	l.JoinLimit = 5
	l.JoinWindow = 200 * time.Millisecond
	startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)

	joined := map[string]time.Time{}
	for len(joined) < len(channels) {
		line := conn.expect(t, "JOIN ")
		for _, channel := range strings.Split(strings.TrimPrefix(line.text, "JOIN "), ",") {
			joined[strings.TrimPrefix(channel, "#")] = line.at
		}
	}
	var times []time.Time
	for _, channel := range channels {
		at, ok := joined[channel]
		if !ok {
			t.Errorf("channel %s was not joined", channel)
		}
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	// Joins leave the client when the window allows and reach the server
	// a little later, so allow some jitter between two measurements.
	const jitter = 40 * time.Millisecond
	for i := l.JoinLimit; i < len(times); i++ {
		if gap := times[i].Sub(times[i-l.JoinLimit]); gap < l.JoinWindow-jitter {
			t.Errorf("joins %d and %d are %s apart, want at least %s", i-l.JoinLimit, i, gap, l.JoinWindow)
		}
	}
}

func TestJoinsOnEveryConnect(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan", "other"))
	for attempt := range 2 {
		r := startRun(t, l, host)
		conn := server.accept(t)
		conn.welcome(t)
		host.waitReady(t)
		// go-twitch-irc joins in map order.
		line := conn.expect(t, "JOIN ").text
		channels := strings.Split(strings.TrimPrefix(line, "JOIN "), ",")
		sort.Strings(channels)
		if fmt.Sprint(channels) != "[#chan #other]" {
			t.Errorf("connection %d: got %q, want a JOIN of #chan and #other", attempt, line)
		}
		conn.send(t, ":tmi.twitch.tv RECONNECT")
		if err := r.wait(t, waitTimeout); err == nil {
			t.Fatalf("connection %d: Run returned nil after RECONNECT, want an error", attempt)
		}
	}
}

func TestReconnectEndsRun(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	conn.send(t, ":tmi.twitch.tv RECONNECT")
	err := r.wait(t, time.Second)
	if err == nil || !strings.Contains(err.Error(), "RECONNECT") {
		t.Errorf("got %v, want an error about RECONNECT", err)
	}
	server.expectNoConnection(t, 300*time.Millisecond)
}

func TestDroppedConnectionEndsRun(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)
	// A close with the client's JOIN unread would reset the connection
	// instead of ending it.
	conn.expect(t, "JOIN ")

	conn.close()
	err := r.wait(t, time.Second)
	if err == nil || !strings.Contains(err.Error(), "closed by the server") {
		t.Errorf("got %v, want an error saying the server closed the connection", err)
	}
	if errors.Is(err, listeners.ErrAuth) {
		t.Errorf("got %v, want an error that does not wrap ErrAuth", err)
	}
	server.expectNoConnection(t, 300*time.Millisecond)
}

func TestStallEndsRun(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	l.IdleTimeout = 300 * time.Millisecond
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.autoPong.Store(false)
	conn.welcome(t)
	host.waitReady(t)
	stalled := time.Now()

	err := r.wait(t, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("got %v, want an error saying the connection stalled", err)
	}
	if elapsed := time.Since(stalled); elapsed < 200*time.Millisecond {
		t.Errorf("Run returned %s after the server went quiet, want about the idle timeout of %s", elapsed, l.IdleTimeout)
	}
	// The client pings a quiet server before the idle timeout ends.
	conn.expect(t, "PING")
	server.expectNoConnection(t, 300*time.Millisecond)
}

func TestPingKeepsQuietConnection(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	l.IdleTimeout = 300 * time.Millisecond
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	// The server replies to the client's pings, so the connection
	// outlives several idle timeouts without other traffic.
	select {
	case err := <-r.done:
		t.Fatalf("Run returned %v on a quiet connection that replies to PING", err)
	case <-time.After(time.Second):
	}
	conn.expect(t, "PING :go-twitch-irc")

	conn.send(t, "PING :tmi.twitch.tv")
	conn.expect(t, "PONG :tmi.twitch.tv")
}

func TestAuthFailureWrapsErrAuth(t *testing.T) {
	for _, notice := range []string{"Login authentication failed", "Improperly formatted auth"} {
		t.Run(notice, func(t *testing.T) {
			server := newFakeServer(t)
			host := newFakeHost(t)
			l := newTestListener(t, testConfig(server.addr(), "wrong", "chan"))
			r := startRun(t, l, host)
			conn := server.accept(t)
			conn.expect(t, "NICK ")
			conn.send(t, ":tmi.twitch.tv NOTICE * :"+notice)

			err := r.wait(t, time.Second)
			if !errors.Is(err, listeners.ErrAuth) {
				t.Errorf("got %v, want an error wrapping ErrAuth", err)
			}
			if err != nil && !strings.Contains(err.Error(), notice) {
				t.Errorf("got %v, want the server's notice in it", err)
			}
			if err != nil && !strings.Contains(err.Error(), "check the username") {
				t.Errorf("got %v, want the fix in it", err)
			}
			server.expectNoConnection(t, 300*time.Millisecond)
		})
	}
}

func TestCancelStopsRun(t *testing.T) {
	for _, welcomed := range []bool{true, false} {
		t.Run(fmt.Sprintf("welcomed=%v", welcomed), func(t *testing.T) {
			server := newFakeServer(t)
			host := newFakeHost(t)
			l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
			r := startRun(t, l, host)
			conn := server.accept(t)
			if welcomed {
				conn.welcome(t)
				host.waitReady(t)
			} else {
				conn.expect(t, "NICK ")
			}

			r.cancel()
			err := r.wait(t, time.Second)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
			server.expectNoConnection(t, 300*time.Millisecond)
		})
	}
}

func TestSendAndReplyWritePrivmsg(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)
	ctx := context.Background()

	if err := l.Send(ctx, "#Chan", "first line\r\nsecond\nthird"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := conn.expect(t, "PRIVMSG ").text; got != "PRIVMSG #chan :first line second third" {
		t.Errorf("got %q, want the text on one line", got)
	}

	if err := l.Reply(ctx, listeners.Event{Channel: "chan", ID: "x"}, "pong"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if got := conn.expect(t, "PRIVMSG ").text; got != "PRIVMSG #chan :pong" {
		t.Errorf("got %q, want PRIVMSG #chan :pong", got)
	}

	long := strings.Repeat("é", 600)
	if err := l.Send(ctx, "chan", long); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := conn.expect(t, "PRIVMSG ").text; got != "PRIVMSG #chan :"+strings.Repeat("é", 500) {
		t.Errorf("got a message of %d characters, want 500", len([]rune(strings.TrimPrefix(got, "PRIVMSG #chan :"))))
	}
}

func TestSendRateLimited(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	l.SendBurst = 2
	l.SendInterval = 100 * time.Millisecond
	startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	start := time.Now()
	for i := range 5 {
		if err := l.Send(context.Background(), "chan", fmt.Sprint("message ", i)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	// Two go at once and the other three wait one interval each.
	if elapsed := time.Since(start); elapsed < 290*time.Millisecond {
		t.Errorf("5 sends took %s, want at least 300ms with a burst of 2 and one more per 100ms", elapsed)
	}
	for i := range 5 {
		if got, want := conn.expect(t, "PRIVMSG ").text, fmt.Sprint("PRIVMSG #chan :message ", i); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Send(ctx, "chan", "late"); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v from Send with an empty bucket and a canceled context, want context.Canceled", err)
	}
}

func TestSendRejects(t *testing.T) {
	l := newTestListener(t, testConfig("127.0.0.1:1", "s3cret", "chan"))
	cases := []struct {
		name, target, text, want string
	}{
		{"no channel", "", "hi", "missing channel"},
		{"line break in channel", "chan\r\nQUIT", "hi", "invalid character"},
		{"space in channel", "a b", "hi", "invalid character"},
		{"empty text", "chan", " \n ", "empty message"},
		{"not connected", "chan", "hi", "not connected"},
	}
	for _, c := range cases {
		err := l.Send(context.Background(), c.target, c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	err := l.Reply(context.Background(), listeners.Event{ID: "x"}, "hi")
	if err == nil || !strings.Contains(err.Error(), "missing channel") {
		t.Errorf("Reply to an event without channel: got %v, want missing channel", err)
	}
}

func TestPanickingDeliverEndsRun(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	host.deliver = func(listeners.Event) { panic("router exploded") }
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	conn.send(t, privmsgLine)
	err := r.wait(t, time.Second)
	if err == nil || !strings.Contains(err.Error(), "panic: router exploded") {
		t.Errorf("got %v, want an error with the panic", err)
	}
	server.expectNoConnection(t, 300*time.Millisecond)
}

func TestHarmlessGarbageIgnored(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)

	conn.send(t, "\x01\x02 garbage ;;; @@", "@", ":", "", ":tmi.twitch.tv 421 bot WHAT :Unknown command", privmsgLine)
	if event := host.nextEvent(t); event.Text != "hello there" {
		t.Errorf("got event text %q, want the message after the garbage", event.Text)
	}
	select {
	case err := <-r.done:
		t.Errorf("Run returned %v after harmless garbage", err)
	default:
	}
}

// A line that makes go-twitch-irc's parser panic is dropped by the relay,
// and the session goes on.
func TestMalformedLineDropped(t *testing.T) {
	cases := map[string]string{
		"badge without version":  "@badges=moderator;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi",
		"PRIVMSG without params": ":a!a@a.tmi.twitch.tv PRIVMSG",
		"NOTICE without params":  ":tmi.twitch.tv NOTICE",
		"emote range backwards":  "@emotes=25:5-2;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hello world",
		"emote in empty message": "@emotes=25:0-4;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan",
	}
	for name, line := range cases {
		t.Run(name, func(t *testing.T) {
			server := newFakeServer(t)
			host := newFakeHost(t)
			l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
			r := startRun(t, l, host)
			conn := server.accept(t)
			conn.welcome(t)
			host.waitReady(t)

			conn.send(t, line, privmsgLine)
			if event := host.nextEvent(t); event.Text != "hello there" {
				t.Errorf("got event text %q, want the message after the malformed line", event.Text)
			}
			select {
			case err := <-r.done:
				t.Errorf("Run returned %v after a malformed line", err)
			default:
			}
			if !strings.Contains(host.logs.String(), "go-twitch-irc panics on it") {
				t.Errorf("the dropped line was not logged:\n%s", host.logs.String())
			}
		})
	}
}

func TestTokenNotLogged(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret-token", "chan"))
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)
	conn.send(t, ":tmi.twitch.tv NOTICE #chan :some notice")
	conn.send(t, ":tmi.twitch.tv NOTICE * :Login authentication failed")
	err := r.wait(t, time.Second)

	outputs := map[string]string{"log": host.logs.String(), "error": fmt.Sprint(err), "listener": fmt.Sprintf("%+v", l)}
	for name, output := range outputs {
		if strings.Contains(output, "s3cret-token") {
			t.Errorf("%s contains the token: %s", name, output)
		}
	}
}

func TestTLSServer(t *testing.T) {
	cert, roots := selfSignedCert(t)
	server := newFakeTLSServer(t, cert)
	host := newFakeHost(t)
	cfg := testConfig(server.addr(), "s3cret", "chan")
	cfg.Twitch.TLS = true
	l := newTestListener(t, cfg)
	l.rootCAs = roots
	startRun(t, l, host)

	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)
	conn.send(t, privmsgLine)
	if event := host.nextEvent(t); event.Text != "hello there" {
		t.Errorf("got event text %q, want hello there", event.Text)
	}
}

func TestTLSRejectsUnknownCertificate(t *testing.T) {
	cert, _ := selfSignedCert(t)
	server := newFakeTLSServer(t, cert)
	cfg := testConfig(server.addr(), "s3cret", "chan")
	cfg.Twitch.TLS = true
	l := newTestListener(t, cfg)
	r := startRun(t, l, newFakeHost(t))

	err := r.wait(t, waitTimeout)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("got %v, want an unknown authority error", err)
	}
}

// selfSignedCert returns a certificate for 127.0.0.1 and a pool that
// trusts it.
func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parsed)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	empty := config.NewSecret("  ", "inline")
	token := config.NewSecret("abc", "inline")
	cases := []struct {
		name string
		cfg  *config.Listener
		want string
	}{
		{"no twitch table", &config.Listener{Name: "chat"}, "missing"},
		{"token without username", &config.Listener{Name: "chat", Twitch: &config.Twitch{Server: "a:1", Token: &token}}, "missing username"},
		{"empty token", &config.Listener{Name: "chat", Twitch: &config.Twitch{Server: "a:1", Username: "bot", Token: &empty}}, "empty"},
		{"server without port", &config.Listener{Name: "chat", Twitch: &config.Twitch{Server: "irc.example.com"}}, "invalid server"},
	}
	for _, c := range cases {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestNewDefaultServer(t *testing.T) {
	for _, useTLS := range []bool{true, false} {
		l, err := New(&config.Listener{Name: "chat", Twitch: &config.Twitch{TLS: useTLS}})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		want := map[bool]string{true: "irc.chat.twitch.tv:6697", false: "irc.chat.twitch.tv:6667"}[useTLS]
		if l.server != want {
			t.Errorf("TLS %v: got server %q, want %q", useTLS, l.server, want)
		}
	}
}

func TestCleanText(t *testing.T) {
	cases := map[string]string{
		"plain":                  "plain",
		"a\r\nb":                 "a b",
		"a\nb\rc":                "a b c",
		"nul\x00byte":            "nulbyte",
		strings.Repeat("x", 501): strings.Repeat("x", 500),
		strings.Repeat("日", 500): strings.Repeat("日", 500),
	}
	for input, want := range cases {
		if got := cleanText(input); got != want {
			t.Errorf("cleanText(%.20q): got %.20q (%d characters), want %.20q", input, got, len([]rune(got)), want)
		}
	}
}

func TestJoinLimiterReserve(t *testing.T) {
	j := newJoinLimiter(20, 10*time.Second, nil)
	start := time.Unix(1000, 0)
	if d := j.reserve(20, start); d != 0 {
		t.Errorf("first 20 joins: got wait %s, want 0", d)
	}
	if d := j.reserve(1, start.Add(3*time.Second)); d != 7*time.Second {
		t.Errorf("21st join 3s later: got wait %s, want 7s", d)
	}
	if d := j.reserve(5, start.Add(10*time.Second)); d != 0 {
		t.Errorf("joins after the window: got wait %s, want 0", d)
	}
	if d := j.reserve(25, start.Add(11*time.Second)); d != 9*time.Second {
		t.Errorf("25 joins with 5 in the window: got wait %s, want 9s until the window is empty", d)
	}
}

func TestTokenBucketTake(t *testing.T) {
	b := newTokenBucket(10, 3*time.Second)
	now := b.last
	for i := range 10 {
		if d := b.take(now); d != 0 {
			t.Fatalf("take %d of the burst: got wait %s, want 0", i, d)
		}
	}
	if d := b.take(now); d != 3*time.Second {
		t.Errorf("take after the burst: got wait %s, want 3s", d)
	}
	// Over 30 s the bucket admits its burst of 10 and one per 3 s after.
	admitted := 10
	for at := now; at.Before(now.Add(30 * time.Second)); at = at.Add(100 * time.Millisecond) {
		if b.take(at) == 0 {
			admitted++
		}
	}
	if admitted > 20 {
		t.Errorf("admitted %d messages in 30s, want at most 20", admitted)
	}
}

func TestChatKeepsClientFromPinging(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	host.deliver = func(listeners.Event) {}
	l := newTestListener(t, testConfig(server.addr(), "", "chan"))
	// The client pings after a third of the idle timeout without a line,
	// so a chat line every 50 ms leaves room for a stall of over 600 ms.
	l.IdleTimeout = 2 * time.Second
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.welcome(t)
	host.waitReady(t)
	// The server sends no PONG, so a ping from the client ends the
	// session after the idle timeout.
	conn.autoPong.Store(false)

	for start := time.Now(); time.Since(start) < 3500*time.Millisecond; {
		if err := conn.write(strings.Replace(privmsgLine, ":hello there", ":still chatting", 1)); err != nil {
			t.Fatalf("write chat: %v", err)
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("the session ended %s into a steady chat: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestChatWithWelcomeWaitsForReady(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	startRun(t, l, host)
	conn := server.accept(t)
	conn.expect(t, "CAP REQ ")
	conn.expect(t, "PASS ")
	nick := strings.TrimPrefix(conn.expect(t, "NICK ").text, "NICK ")
	// The welcome and a chat line in one write, so the relay reads both
	// at once.
	if err := conn.write(":tmi.twitch.tv 001 " + nick + " :Welcome, GLHF!\r\n" + privmsgLine); err != nil {
		t.Fatal(err)
	}

	ev := host.nextEvent(t)
	select {
	case <-host.ready:
	default:
		t.Errorf("event %q arrived before the listener was ready", ev.Text)
	}
	if l.activeSession() == nil {
		t.Error("the event arrived before the session could send replies")
	}
}

func TestChatBeforeWelcomeIsNotHeld(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	startRun(t, l, host)
	conn := server.accept(t)
	conn.expect(t, "CAP REQ ")
	conn.expect(t, "PASS ")
	conn.expect(t, "NICK ")

	start := time.Now()
	if err := conn.write(privmsgLine); err != nil {
		t.Fatal(err)
	}
	host.nextEvent(t)
	if waited := time.Since(start); waited > welcomeWait/2 {
		t.Errorf("a chat line before any welcome waited %s for one", waited.Round(time.Millisecond))
	}
}

func TestUnansweredPingNamesPong(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	l.IdleTimeout = time.Second
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.autoPong.Store(false)
	conn.welcome(t)
	host.waitReady(t)

	// A line every half second keeps the relay's idle timeout from
	// firing, and the unanswered PING makes go-twitch-irc close the socket.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				conn.write(":tmi.twitch.tv NOTICE * :still here")
			}
		}
	}()

	err := r.wait(t, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no PONG within 1s of a PING") {
		t.Errorf("got %v, want an error naming the unanswered PING", err)
	}
}
