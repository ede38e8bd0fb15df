// Package storetest is the conformance suite of store's contracts. Every
// implementation of store.Queue, store.Locker and store.Artifacts runs it
// from its own tests, with a function that opens a fresh, empty instance:
//
//	func TestQueue(t *testing.T) {
//		storetest.TestQueue(t, func(t *testing.T) store.Queue { return openEmpty(t) })
//	}
//
// The suite uses real time: short leases (a few hundred milliseconds) that
// it waits out by polling for the condition it expects, bounded by a
// deadline, never by sleeping and hoping.
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
	// calls, which must all happen while it is live, even on a slow machine.
	medium = 1500 * time.Millisecond
	// long is a lease that outlives every subtest.
	long = 2 * time.Minute
	// bound is how long the suite waits for a condition before failing.
	bound = 15 * time.Second
)

// ctx is the context of one subtest: cancelled when it ends, bounded.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// waitUntil polls cond until it returns true, failing t after bound.
// cond may itself fail t.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPast returns once the clock has passed instant.
func waitPast(instant time.Time) {
	if d := time.Until(instant); d > 0 {
		time.Sleep(d + 10*time.Millisecond)
	}
}
