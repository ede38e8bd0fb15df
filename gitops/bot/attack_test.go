package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	labgithub "github.com/ducksnest/nestbot/lab/github"
	"github.com/ducksnest/nestbot/store"
)

// TestDeadLetteredPlanIsReportedOnItsPR: a pull request whose plan the
// workers gave up on (issue 12 (5)) is told so: its plan comment says the
// plan failed and why, and its head gets a failed nest/plan check run.
func TestDeadLetteredPlanIsReportedOnItsPR(t *testing.T) {
	w := newWorld(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr := w.openPR(ctx, t, "bomb", map[string][]byte{"README.md": []byte("x\n")})
	ev, err := w.gh.PullRequestEvent(w.repo.Owner, w.repo.Name, pr.Number, "opened")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.bot.DeadLetter(ctx, store.Job{ID: labgithub.NewDeliveryID(), Event: ev.Name, Payload: ev.Payload, Attempt: 4}); err != nil {
		t.Fatal(err)
	}
	cs := w.comments(t, pr.Number)
	if planComments(cs) != 1 || !strings.Contains(cs[0].Body, "gave up on this job") || !strings.Contains(cs[0].Body, "after 3 attempts") {
		t.Fatalf("comments after the dead letter: %+v, want the plan comment saying nestbot gave up after 3 attempts", cs)
	}
	runs, _ := w.gh.CheckRuns(w.repo.Owner, w.repo.Name, pr.HeadSHA)
	if len(runs) != 1 || runs[0].Conclusion != "failure" {
		t.Fatalf("check runs: %+v, want one failed nest/plan", runs)
	}
	w.checkViolations(t)
}
