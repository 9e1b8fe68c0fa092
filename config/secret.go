package config

import (
	"log/slog"
	"strings"
)

// Secret is a value written inline or read from a file, an environment
// variable or a systemd credential. It prints as its source, never as its
// value, so a Secret that reaches a log or an error message leaks nothing.
type Secret struct {
	// value is a pointer so that fmt prints an address, not the value,
	// on the paths that bypass String, such as %#v or a wrong verb like
	// %s on a struct that contains a Secret.
	value *string
	// Source describes where the value came from, such as "inline",
	// "file /run/keys/token", "env TOKEN" or "credential token".
	Source string
}

// NewSecret wraps value read from source.
func NewSecret(value, source string) Secret {
	return Secret{value: &value, Source: source}
}

// Reveal returns the value itself, for handing to a child or a client.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// String returns a redacted form naming the source.
func (s Secret) String() string { return "[redacted " + s.Source + "]" }

// LogValue redacts the value in structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MinSecretBytes is the length below which a secret is not redacted,
// because so short a value would match ordinary text. check and doctor
// name such a secret.
const MinSecretBytes = 4

// MinSecretLineBytes is the length, spaces trimmed, below which a line of
// a multi-line secret is not redacted. Output is redacted line by line, so
// each line of a PEM key or a JSON credential file is its own needle, and
// short lines such as a lone "}" would match ordinary output.
const MinSecretLineBytes = 8

// Needles returns the strings that redaction replaces for the secret: its
// value without trailing line breaks, or, when it spans lines, each of
// its lines of at least MinSecretLineBytes, since no output line can
// contain a line break. It is empty for a value too short to redact.
func (s Secret) Needles() []string {
	value := strings.TrimRight(s.Reveal(), "\r\n")
	if !strings.Contains(value, "\n") {
		if len(value) < MinSecretBytes {
			return nil
		}
		return []string{value}
	}
	var found []string
	for _, line := range strings.Split(value, "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= MinSecretLineBytes {
			found = append(found, line)
		}
	}
	return found
}
