package bot

import (
	"context"
	"errors"
	"fmt"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/store"
)

// DeadLetter reports a job the workers gave up on (webhook.Pool.DeadLetter:
// it was claimed MaxAttempts times and each time its process died before
// it returned — a nest.yaml that exhausts memory, say). A pull request's
// plan fails: its plan comment and a failed nest/plan check run on the head
// say so; a command gets a reply; other jobs are only logged. Nothing of
// the job is run.
func (b *Bot) DeadLetter(ctx context.Context, j store.Job) error {
	why := fmt.Sprintf("nestbot gave up on this job (delivery %s) after %d attempts: each one stopped nestbot before it finished. It will not run again by itself.", j.ID, j.Attempt-1)
	ctx, log := b.withLog(ctx, "delivery", j.ID, "event", j.Event)
	log.Error("dead-lettered", "attempts", j.Attempt-1)
	b.observe(kindOf(j.Event), "dead_lettered")
	if j.Event == "drift" {
		return nil
	}
	ev, err := gogithub.ParseWebHook(j.Event, j.Payload)
	if err != nil {
		return fmt.Errorf("delivery %s: %s event: %w", j.ID, j.Event, err)
	}
	switch e := ev.(type) {
	case *gogithub.PullRequestEvent:
		pr := e.GetPullRequest()
		cause := errors.New(why)
		err := b.reportFailure(ctx, b.client(e.GetInstallation()), repoOf(e.GetRepo()), pr.GetNumber(), pr.GetHead().GetSHA(),
			e.GetRepo().GetName(), cause, &PlanResult{})
		if err == cause {
			return nil // reported: reportFailure returns the cause itself
		}
		return err
	case *gogithub.IssueCommentEvent:
		if !e.GetIssue().IsPullRequest() {
			return nil
		}
		return b.reply(ctx, b.client(e.GetInstallation()), repoOf(e.GetRepo()), e.GetIssue().GetNumber(),
			fmt.Sprintf("@%s: your command was not carried out. %s", e.GetComment().GetUser().GetLogin(), why))
	}
	return nil
}

// kindOf is the metric kind of an event's job.
func kindOf(event string) string {
	switch event {
	case "push":
		return "apply"
	case "drift":
		return "drift"
	}
	return "plan"
}
