package testkit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		err := poll(t.Context(), func() bool { calls++; return time.Since(start) >= time.Second })
		if err != nil || time.Since(start) > time.Second+maxPoll {
			t.Fatalf("poll: %v after %s, want nil within %s", err, time.Since(start), time.Second+maxPoll)
		}
		if calls < 2 {
			t.Errorf("cond called %d times", calls)
		}
	})
}

func TestPollEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		err := poll(ctx, func() bool { return false })
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Fatalf("poll: %v after %s, want the deadline after 1s", err, time.Since(start))
		}
	})
}

func TestWaitForPassesWhenTheConditionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		WaitFor(t, "a second to pass", time.Minute, func() bool { return time.Since(start) >= time.Second })
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		WaitForContext(t, ctx, "two seconds to pass", func() bool { return time.Since(start) >= 2*time.Second })
	})
}
