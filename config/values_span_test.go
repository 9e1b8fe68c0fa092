package config

import (
	"testing"
	"time"
)

// TestSystemdSpanOverflow checks that a span too long for a
// time.Duration gets no hint rather than one that wrapped around.
func TestSystemdSpanOverflow(t *testing.T) {
	for _, s := range []string{"100000 weeks", "4294967295 w", "15251 w", "15000 w 251 w", "106751 days 1 day"} {
		if d, ok := systemdSpan(s); ok {
			t.Errorf("systemdSpan(%q) = %v, true; want no span", s, d)
		}
	}
	if d, ok := systemdSpan("15250 weeks"); !ok || d != 15250*7*24*time.Hour {
		t.Errorf("systemdSpan(%q) = %v, %v; want 15250 weeks", "15250 weeks", d, ok)
	}
}
