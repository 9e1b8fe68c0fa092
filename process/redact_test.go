package process

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agent-runner/agent-runner/config"
)

const testSecret = "cut-secret-3f9a0c17b2"

func testRedactor(values ...string) *Redactor {
	env := map[string]config.Secret{}
	for i, value := range values {
		env[string(rune('A'+i))] = config.NewSecret(value, "file test")
	}
	return NewRedactor(env)
}

// runRedacted runs script under sh through a Reaper with TOKEN set to
// testSecret, and returns the redacted pieces of its stdout.
func runRedacted(t *testing.T, script string) []string {
	t.Helper()
	reaper, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer reaper.Close()

	var mu sync.Mutex
	var pieces []string
	lines := testRedactor(testSecret).Lines(func(line Line) {
		mu.Lock()
		defer mu.Unlock()
		if line.Stream == "stdout" {
			pieces = append(pieces, line.Text)
		}
	})
	exit, err := reaper.Run(context.Background(), Spec{
		Path: "/bin/sh", Args: []string{"sh", "-c", script},
		Env: []string{"PATH=/usr/bin:/bin", "TOKEN=" + testSecret},
	}, lines.Emit)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Err != nil {
		t.Fatalf("script failed: %v", exit.Err)
	}
	lines.Flush()
	return pieces
}

func checkNoSecret(t *testing.T, pieces []string) {
	t.Helper()
	joined := strings.Join(pieces, "")
	if strings.Contains(joined, testSecret) {
		t.Errorf("the secret reaches the output across a cut: %q", around(joined, testSecret))
	}
}

func around(text, value string) string {
	i := strings.Index(text, value)
	return text[max(0, i-10):min(len(text), i+len(value)+10)]
}

// A secret that starts 6 bytes before the 64 KiB cut of one write.
func TestRedactSecretAcrossLineCut(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	data := strings.Repeat("a", MaxLineBytes-6) + testSecret + " end\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	pieces := runRedacted(t, "cat "+path)
	checkNoSecret(t, pieces)
	want := strings.Repeat("a", MaxLineBytes-6) + "[redacted] end"
	if got := strings.Join(pieces, ""); got != want {
		t.Errorf("joined output has %d bytes ending %q, want %d bytes ending %q",
			len(got), got[max(0, len(got)-20):], len(want), want[len(want)-20:])
	}
	if len(pieces) != 2 {
		t.Errorf("got %d pieces, want 2", len(pieces))
	}
}

// A child that writes without newlines, cutting the secret between two
// write calls at the 64 KiB limit.
func TestRedactSecretAcrossWrites(t *testing.T) {
	script := `head -c 65526 /dev/zero | tr '\0' b
printf '%s' "${TOKEN%${TOKEN#??????????}}"
sleep 0.2
printf '%s' "${TOKEN#??????????}"
printf ' more'`
	pieces := runRedacted(t, script)
	checkNoSecret(t, pieces)
	want := strings.Repeat("b", MaxLineBytes-10) + "[redacted] more"
	if got := strings.Join(pieces, ""); got != want {
		t.Errorf("joined output has %d bytes ending %q, want %d bytes ending %q",
			len(got), got[max(0, len(got)-20):], len(want), want[len(want)-20:])
	}
}

// A stream that ends right at the cut with what could start a secret:
// Flush passes the held bytes on.
func TestRedactFlushesHeldEnd(t *testing.T) {
	script := `head -c 65530 /dev/zero | tr '\0' c; printf 'cut-se'`
	pieces := runRedacted(t, script)
	want := strings.Repeat("c", MaxLineBytes-6) + "cut-se"
	if got := strings.Join(pieces, ""); got != want {
		t.Errorf("joined output has %d bytes ending %q, want %d bytes ending %q",
			len(got), got[max(0, len(got)-20):], len(want), want[len(want)-20:])
	}
}

func TestRedactText(t *testing.T) {
	r := testRedactor("abcdef", "abcd", "xyz9")
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"abcdef", "[redacted]"},
		{"abcd", "[redacted]"},
		{"abcdeabcdef", "[redacted]e[redacted]"},
		{"xyz9xyz9", "[redacted][redacted]"},
		{"abcxyz9ab", "abc[redacted]ab"},
	}
	for _, c := range cases {
		if got := r.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := (*Redactor)(nil).Redact("abcdef"); got != "abcdef" {
		t.Errorf("nil Redactor changed the text to %q", got)
	}
}

func TestNewRedactorSkipsInlineAndShort(t *testing.T) {
	env := map[string]config.Secret{
		"SHORT":  config.NewSecret("abc", "file x"),
		"INLINE": config.NewSecret("inline-value", "inline"),
	}
	if r := NewRedactor(env); r != nil {
		t.Errorf("NewRedactor = %v, want nil for inline and short values", r.secrets)
	}
}

// Pieces fed by hand, cut at every offset of the secret, join to the
// same text as redacting the whole line.
func TestLineRedactorEveryCut(t *testing.T) {
	r := testRedactor(testSecret, "cut-se-x")
	for cut := 0; cut <= len(testSecret); cut++ {
		var got strings.Builder
		lines := r.Lines(func(line Line) { got.WriteString(line.Text) })
		first := strings.Repeat("z", MaxLineBytes-cut) + testSecret[:cut]
		lines.Emit(Line{Stream: "stdout", Text: first})
		lines.Emit(Line{Stream: "stdout", Text: testSecret[cut:] + "!"})
		lines.Flush()
		want := strings.Repeat("z", MaxLineBytes-cut) + "[redacted]!"
		if got.String() != want {
			t.Errorf("cut at %d: got %q, want %q", cut, got.String()[MaxLineBytes-cut:], want[MaxLineBytes-cut:])
		}
	}
}

// A multi-line secret is redacted line by line, and trailing newlines of
// any secret are not part of the needle.
func TestRedactMultiLineSecret(t *testing.T) {
	r := testRedactor("-----BEGIN KEY-----\r\n  MIIEline1AAAA\r\nMIIEline2BBBB\r\n}\n-----END KEY-----\n", "token1234\n\n")
	cases := []struct{ in, want string }{
		{"MIIEline1AAAA", "[redacted]"},
		{"  MIIEline2BBBB  ", "  [redacted]  "},
		{"-----END KEY-----", "[redacted]"},
		{"}", "}"},
		{"tok=token1234.", "tok=[redacted]."},
	}
	for _, c := range cases {
		if got := r.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// An inline env value is a secret when its name is one, and With adds the
// values a child read from its env_file.
func TestRedactorSecretNames(t *testing.T) {
	r := NewRedactor(map[string]config.Secret{
		"API_TOKEN": config.NewSecret("inline-token-value", "inline"),
		"GREETING":  config.NewSecret("hello-world-value", "inline"),
		// A switch under a secret name is no secret.
		"USE_COOKIES": config.NewSecret("disabled", "inline"),
	})
	got := r.With([]config.Secret{config.NewSecret("file-secret-value", "env_file x")}).
		Redact("inline-token-value hello-world-value file-secret-value disabled")
	if want := "[redacted] hello-world-value [redacted] disabled"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
	if got := r.Redact("file-secret-value"); got != "file-secret-value" {
		t.Errorf("With changed its receiver: %q", got)
	}
	var none *Redactor
	if got := none.With([]config.Secret{config.NewSecret("abc", "env_file x")}); got != nil {
		t.Errorf("With of a value too short to redact = %v, want nil", got)
	}
	if got := none.With([]config.Secret{config.NewSecret("long-enough", "env_file x")}).Redact("a long-enough b"); got != "a [redacted] b" {
		t.Errorf("With on nil redacts to %q", got)
	}
}
