package process

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/agent-runner/agent-runner/config"
)

// redactedText replaces each secret value.
const redactedText = "[redacted]"

// Redactor replaces the secret values of an environment by "[redacted]"
// in a child's output before it is logged or stored. Secret values are
// those read from a file, an environment variable or a credential, and
// those of variables whose name config.SecretName counts as a secret,
// wherever they come from. A nil Redactor has no secrets and changes
// nothing.
type Redactor struct {
	// secrets are ordered longest first, so that of two secrets starting
	// at one position the longer one is replaced.
	secrets []string
}

// NewRedactor returns a Redactor of the secret values in env and of more,
// or nil when there are none. An inline value of env is a secret when its
// name is one; every value of more is a secret.
func NewRedactor(env map[string]config.Secret, more ...config.Secret) *Redactor {
	var secrets []string
	for name, secret := range env {
		if secret.Source != "inline" || config.NamedSecret(name, secret.Reveal()) {
			secrets = append(secrets, secret.Needles()...)
		}
	}
	for _, secret := range more {
		secrets = append(secrets, secret.Needles()...)
	}
	return newRedactor(secrets)
}

// With returns a Redactor of r's secrets and more, such as the values that
// one child read from its env_file. It returns r itself when more adds
// nothing.
func (r *Redactor) With(more []config.Secret) *Redactor {
	var secrets []string
	for _, secret := range more {
		secrets = append(secrets, secret.Needles()...)
	}
	if len(secrets) == 0 {
		return r
	}
	if r != nil {
		secrets = append(secrets, r.secrets...)
	}
	return newRedactor(secrets)
}

func newRedactor(secrets []string) *Redactor {
	if len(secrets) == 0 {
		return nil
	}
	sort.Slice(secrets, func(i, j int) bool {
		if len(secrets[i]) != len(secrets[j]) {
			return len(secrets[i]) > len(secrets[j])
		}
		return secrets[i] < secrets[j]
	})
	return &Redactor{secrets: slices.Compact(secrets)}
}

// Redact replaces every secret value in text.
func (r *Redactor) Redact(text string) string {
	if r == nil {
		return text
	}
	done, held := r.scan(text, true)
	return done + held
}

// scan replaces the secrets in text from left to right, at each position
// the longest one that starts there. Unless final, it stops at the first
// position from which the rest of text is a proper prefix of a secret and
// returns that rest unchanged as held, because the next piece of the same
// line may complete the secret.
func (r *Redactor) scan(text string, final bool) (done, held string) {
	var out strings.Builder
	found := make([]int, len(r.secrets))
	for i := range found {
		found[i] = -1
	}
	hold := -1
	if !final {
		hold = r.partialFrom(text, 0)
	}
	start := 0
	for start < len(text) {
		at, secret := r.next(text, start, found)
		if hold >= 0 && hold < start {
			hold = r.partialFrom(text, start)
		}
		if hold >= 0 && (secret == "" || hold <= at) {
			out.WriteString(text[start:hold])
			return out.String(), text[hold:]
		}
		if secret == "" {
			out.WriteString(text[start:])
			break
		}
		out.WriteString(text[start:at])
		out.WriteString(redactedText)
		start = at + len(secret)
	}
	return out.String(), ""
}

// next returns the leftmost secret in text at or after start, and its
// position; secret is empty when there is none. found caches the last
// position found of each secret, -1 before the first search and
// len(text) when there is none left.
func (r *Redactor) next(text string, start int, found []int) (at int, secret string) {
	at = len(text)
	for i, candidate := range r.secrets {
		if found[i] < start {
			found[i] = len(text)
			if j := strings.Index(text[start:], candidate); j >= 0 {
				found[i] = start + j
			}
		}
		if found[i] < at {
			at, secret = found[i], candidate
		}
	}
	return at, secret
}

// partialFrom returns the first position at or after start from which the
// rest of text is a proper, non-empty prefix of a secret, or -1.
func (r *Redactor) partialFrom(text string, start int) int {
	from := max(start, len(text)-len(r.secrets[0])+1)
	for i := from; i < len(text); i++ {
		for _, secret := range r.secrets {
			if len(text)-i < len(secret) && strings.HasPrefix(secret, text[i:]) {
				return i
			}
		}
	}
	return -1
}

// LineRedactor redacts the lines of one child's output as they arrive and
// passes them on. A line longer than MaxLineBytes reaches it in pieces,
// and a secret that the cut falls inside is still replaced. The end of a
// piece that could begin a secret is held back and joined to the next
// piece of the same stream.
type LineRedactor struct {
	redactor *Redactor
	emit     func(Line)
	mu       sync.Mutex
	held     map[string]string
}

// Lines returns a LineRedactor that passes the redacted lines to emit.
// Emit may be called from one goroutine per stream at once.
func (r *Redactor) Lines(emit func(Line)) *LineRedactor {
	return &LineRedactor{redactor: r, emit: emit, held: map[string]string{}}
}

// Emit redacts line and passes it on, less any end that is held back.
func (l *LineRedactor) Emit(line Line) {
	if l.redactor == nil {
		l.emit(line)
		return
	}
	l.mu.Lock()
	text := l.held[line.Stream] + line.Text
	delete(l.held, line.Stream)
	l.mu.Unlock()

	done, held := l.redactor.scan(text, !continues(line))
	if held != "" {
		l.mu.Lock()
		l.held[line.Stream] = held
		l.mu.Unlock()
	}
	line.Text = done
	l.emit(line)
}

// Flush passes on, redacted, what is still held back: the end of a
// stream's last piece when the stream ended right after a cut. Call it
// once the child's output is read.
func (l *LineRedactor) Flush() {
	l.mu.Lock()
	held := l.held
	l.held = map[string]string{}
	l.mu.Unlock()
	for _, stream := range sortedKeys(held) {
		l.emit(Line{Stream: stream, Text: l.redactor.Redact(held[stream])})
	}
}

// continues reports whether line is a piece of a longer line that the
// next Line of its stream continues: the reader cuts a line without a
// newline at exactly MaxLineBytes.
//
// NOTE: the reader trims a final "\r" from each piece, so a cut piece that
// ended in "\r" arrives one byte short and counts as a whole line here.
// A secret cut at that point is therefore not held back.
func continues(line Line) bool {
	return len(line.Text) == MaxLineBytes
}
