package config

import "testing"

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
		if got := closestName(c.name, jobKeys); got != c.want {
			t.Errorf("closestName(%q, jobKeys) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestClosestNameSwappedBytes(t *testing.T) {
	if got := closestName("tsl", []string{"server", "tls", "token"}); got != "tls" {
		t.Errorf("closestName(%q) = %q, want %q", "tsl", got, "tls")
	}
}
