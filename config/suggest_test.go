package config

import (
	"testing"

	"github.com/agent-runner/agent-runner/internal/suggest"
)

func TestClosestNameGuesses(t *testing.T) {
	cases := []struct {
		name string
		want string
	}{
		{"evry", "every"},
		{"schedul", "schedule"},
		{"retrys", "retries"},
		{"timzone", "timezone"},
		{"tiemout", "timeout"},
		{"tz", ""},
		{"path", ""},
		{"bad", ""},
		{"cmd", ""},
	}
	for _, c := range cases {
		if got := suggest.Closest(c.name, jobKeys); got != c.want {
			t.Errorf("suggest.Closest(%q, jobKeys) = %q, want %q", c.name, got, c.want)
		}
	}
}
