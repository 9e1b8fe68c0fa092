package daemon

import "sync"

// loadSignal is the notice to the reloader that a reload loaded a
// config, which may have switched watch on or off. A reload through the
// control socket bypasses the reloader, which learns of it here. The
// zero value is ready to use.
type loadSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (s *loadSignal) channel() chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, 1) })
	return s.ch
}

// loaded records a load. Loads not yet received merge into one.
func (s *loadSignal) loaded() {
	select {
	case s.channel() <- struct{}{}:
	default:
	}
}

// loads receives after each load.
func (s *loadSignal) loads() <-chan struct{} { return s.channel() }
