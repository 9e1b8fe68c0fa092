package suggest

import "testing"

func TestClosestSwappedBytes(t *testing.T) {
	if got := Closest("tsl", []string{"server", "tls", "token"}); got != "tls" {
		t.Errorf("Closest(%q) = %q, want %q", "tsl", got, "tls")
	}
}

func TestClosestShortNameNeedsOneEdit(t *testing.T) {
	flags := []string{"json", "n", "config"}
	cases := map[string]string{"jsn": "json", "josn": "json", "js": "", "confg": "config"}
	for name, want := range cases {
		if got := Closest(name, flags); got != want {
			t.Errorf("Closest(%q) = %q, want %q", name, got, want)
		}
	}
}
