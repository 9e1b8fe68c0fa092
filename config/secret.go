package config

import "log/slog"

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
