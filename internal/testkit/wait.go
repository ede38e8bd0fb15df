// Package testkit holds what nestbot's tests share: a bounded wait for a
// condition, and the example fleet with another admin. It imports testing,
// so only tests import it (cmd/nestbot's dependency test keeps it out of
// the shipped binary).
package testkit

import (
	"context"
	"testing"
	"time"
)

// The poll interval starts short, so a condition that holds soon is seen
// soon, and grows to a cap, so a slow one is not polled hot.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// WaitFor polls cond until it holds, and fails t if it does not within
// limit (or before the test's context ends). what names the condition in
// the failure.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("%s: not within %s", what, limit)
	}
}

// WaitForContext polls cond until it holds, and fails t if it does not
// before ctx ends. ctx bounds the wait, so it must have a deadline: without
// one, WaitForContext fails t at once.
func WaitForContext(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	if _, ok := ctx.Deadline(); !ok {
		t.Fatalf("waiting for %s: the context has no deadline, so the wait has no bound", what)
	}
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll calls cond until it holds (nil) or ctx ends (ctx's error).
func poll(ctx context.Context, cond func() bool) error {
	timer := time.NewTimer(firstPoll)
	defer timer.Stop()
	for interval := firstPoll; !cond(); interval = min(2*interval, maxPoll) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			timer.Reset(interval)
		}
	}
	return nil
}
