package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// CheckDrift is the name of the drift check run.
const CheckDrift = "nest/drift"

// DriftJob is the payload of a drift check job.
type DriftJob struct {
	Repo           string `json:"repository"` // owner/name
	CloneURL       string `json:"clone_url"`
	Branch         string `json:"branch"`
	InstallationID int64  `json:"installation_id,omitempty"`
}

// DriftResult is what a drift check found.
type DriftResult struct {
	Head    string
	Plan    *reconcile.Plan
	Issue   int // the drift issue's number (0 when there never was drift)
	Drifted bool
}

func (b *Bot) runDrift(ctx context.Context, payload []byte) error {
	var j DriftJob
	if err := json.Unmarshal(payload, &j); err != nil {
		return fmt.Errorf("drift job: %w", err)
	}
	repo, err := nestgh.ParseRepo(j.Repo)
	if err != nil {
		return err
	}
	_, err = b.Drift(ctx, b.installation(j.InstallationID), DriftRequest{Repo: repo, CloneURL: j.CloneURL, Branch: j.Branch})
	return err
}

// DriftRequest is a branch to check for drift.
type DriftRequest struct {
	Repo     nestgh.Repo
	CloneURL string
	Branch   string // the default branch
}

// Drift plans branch (the default branch) against the live fleet, and
// reports what differs — which a lost webhook delivery or a change made by
// hand leaves behind — in a nest/drift check run on its head and in one
// issue kept current: opened when the fleet drifts, updated while it does,
// closed when it matches again.
func (b *Bot) Drift(ctx context.Context, gh GitHub, req DriftRequest) (*DriftResult, error) {
	repo, cloneURL, branch := req.Repo, req.CloneURL, req.Branch
	ctx, log := b.withLog(ctx, "repository", repo.FullName(), "branch", branch)
	log.Info("checking for drift")
	co, done, err := b.workspace(ctx, gh, cloneURL, branch)
	defer done()
	if err != nil {
		return nil, err
	}
	res := &DriftResult{Head: co.head}
	d, err := fleet.Load(co.file)
	var invalid nest.Errors
	if errors.As(err, &invalid) {
		return res, fmt.Errorf("%s on %s is not valid, so drift cannot be judged:\n%w", b.cfg.File, branch, invalid)
	}
	if err != nil {
		return res, err
	}
	s, err := fleet.Observe(ctx, d, b.fleetOptions(ctx))
	if err != nil {
		return res, fmt.Errorf("observe the live fleet: %w", err)
	}
	defer s.Close()
	b.hostStates(s)
	plan, err := s.Plan(co.head)
	if err != nil {
		return res, err
	}
	res.Plan, res.Drifted = plan, plan.HasChanges()
	parts := reconcile.RenderMarkdown(plan)
	title, conclusion := "No drift: the fleet matches "+branch, "success"
	if res.Drifted {
		title, conclusion = "Drift: "+plan.Summary().String(), "neutral"
	}
	if _, err := gh.CreateCheckRun(ctx, repo, nestgh.CheckRun{Name: CheckDrift, HeadSHA: co.head, Status: "completed",
		Conclusion: conclusion, Title: title, Summary: checkText(parts), DetailsURL: b.cfg.DetailsURL}); err != nil {
		return res, err
	}
	marker := fmt.Sprintf("<!-- nestbot:drift fleet=%s -->", d.Fleet.Name)
	body := fmt.Sprintf("%s\nThe live fleet differs from `%s` at %s. nestbot re-plans it on a schedule; this issue is updated while the drift lasts and closed when it is gone. A push to %s applies the plan.\n\n%s",
		marker, branch, fleet.ShortRev(co.head), branch, checkText(parts))
	issueTitle := fmt.Sprintf("nestbot: %s drifted from %s", d.Fleet.Name, branch)
	if res.Issue, err = gh.SyncIssue(ctx, repo, marker, issueTitle, body, res.Drifted); err != nil {
		return res, err
	}
	b.observe("drift", map[bool]string{true: "drift", false: "clean"}[res.Drifted])
	log.Info("drift check: "+title, "head", fleet.ShortRev(co.head), "drifted", res.Drifted)
	return res, nil
}
