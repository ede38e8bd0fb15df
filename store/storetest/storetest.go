// Package storetest is the conformance suite of store's contracts. Every
// implementation of store.Queue, store.Locker and store.Artifacts runs it
// from its own tests, with a function that opens a fresh, empty instance:
//
//	func TestQueue(t *testing.T) {
//		storetest.TestQueue(t, func(t *testing.T, now func() time.Time) store.Queue {
//			return openEmpty(t, now)
//		})
//	}
//
// The instance reads the time from now, a Clock the suite moves by hand:
// a lease ends when the suite moves the clock past it, so no subtest waits
// one out.
package storetest

import (
	"context"
	"testing"
	"time"
)

const (
	// short is a lease the suite lets expire.
	short = 300 * time.Millisecond
	// medium is a lease the suite lets expire after using it for a few
	// calls.
	medium = 1500 * time.Millisecond
	// long is a lease that outlives every subtest.
	long = 2 * time.Minute
	// bound is how long the concurrent workers may take, all told.
	bound = 15 * time.Second
)

// ctx is the context of one subtest: cancelled when it ends, bounded.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
