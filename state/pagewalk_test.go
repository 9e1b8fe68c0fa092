package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCheckFileEndsOnPageCycle damages a branch page so that its first
// child is the page itself. A cursor then descended without end: a start
// of the daemon on such a store grew to 24 GB and was killed by the
// kernel before it logged a word, and so did every restart.
func TestCheckFileEndsOnPageCycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("jobs"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			if err := b.Put(fmt.Appendf(nil, "job-%05d", i), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	if err := db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte("jobs")).Root())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	db.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := data[int(root)*pageSize:]
	if binary.LittleEndian.Uint16(page[8:])&branchPageFlag == 0 {
		t.Fatalf("the bucket's root page %d is no branch page", root)
	}
	binary.LittleEndian.PutUint64(page[pageHeaderSize+8:], root)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	done := make(chan error, 1)
	go func() { done <- checkFile(db) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("checkFile = %v, want ErrCorrupt", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("checkFile did not end in 3 s on a page that is its own child")
	}
}
