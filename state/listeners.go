package state

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ListenerKV is one listener's persistent key-value space, for cursors
// and sessions. Each Put is its own durable transaction.
type ListenerKV struct {
	store *Store
	name  string
}

// Listener returns the key-value space of the named listener.
func (s *Store) Listener(name string) ListenerKV {
	return ListenerKV{store: s, name: name}
}

// Get returns the value stored at key, and false when there is none.
func (kv ListenerKV) Get(key string) ([]byte, bool, error) {
	var value []byte
	err := kv.store.db.View(func(tx *bolt.Tx) error {
		bucket := tx.Bucket(bucketListeners).Bucket([]byte(kv.name))
		if bucket == nil {
			return nil
		}
		if v := bucket.Get([]byte(key)); v != nil {
			value = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read %s of listener %s: %w", key, kv.name, err)
	}
	return value, value != nil, nil
}

// Put stores value at key.
func (kv ListenerKV) Put(key string, value []byte) error {
	err := kv.store.update(func(tx *bolt.Tx) error {
		bucket, err := tx.Bucket(bucketListeners).CreateBucketIfNotExists([]byte(kv.name))
		if err != nil {
			return err
		}
		return bucket.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("store %s of listener %s: %w", key, kv.name, err)
	}
	return nil
}
