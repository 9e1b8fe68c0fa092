package state

import (
	"testing"
)

func TestListenerKVSurvivesReopen(t *testing.T) {
	path := tempStorePath(t)
	store := openTestStore(t, path, Options{})
	kv := store.Listener("mentions")
	if _, ok, err := kv.Get("cursor"); err != nil || ok {
		t.Fatalf("Get on an empty store = %v, %v; want not found", ok, err)
	}
	if err := kv.Put("cursor", []byte("2026-12-04T10:00:00Z")); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	reopened := openTestStore(t, path, Options{})
	value, ok, err := reopened.Listener("mentions").Get("cursor")
	if err != nil || !ok {
		t.Fatalf("Get after reopen = %v, %v; want the stored value", ok, err)
	}
	if string(value) != "2026-12-04T10:00:00Z" {
		t.Errorf("value = %q, want the stored cursor", value)
	}
	if _, ok, _ := reopened.Listener("other").Get("cursor"); ok {
		t.Errorf("another listener sees the cursor")
	}
}
