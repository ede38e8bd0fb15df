package bot

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

// stickyMarker finds the plan comment of any fleet: every part that
// reconcile.RenderMarkdown writes begins with it.
const stickyMarker = "<!-- nestbot:plan "

// CheckPlan is the name of the plan's check run.
const CheckPlan = "nest/plan"

// PlanResult is what planning a pull request came to.
type PlanResult struct {
	Head string
	// Deferred are the trusted values (fleet.Desired.Trust) the pull
	// request changes: planned with the default branch's, in effect after
	// merge.
	Deferred []string
	Plan     *reconcile.Plan // nil when nest.yaml was invalid or planning failed
	Invalid  nest.Errors
	Parts    []string // the comment's parts
	Sticky   nestgh.StickyResult
	Skipped  string // why nothing was planned, if nothing was
}

func repoOf(r *gogithub.Repository) nestgh.Repo {
	return nestgh.Repo{Owner: r.GetOwner().GetLogin(), Name: r.GetName()}
}

func (b *Bot) onPullRequest(ctx context.Context, e *gogithub.PullRequestEvent) error {
	switch e.GetAction() {
	case "opened", "synchronize", "reopened", "ready_for_review":
	default:
		return nil
	}
	pr := e.GetPullRequest()
	_, err := b.PlanPR(ctx, b.client(e.GetInstallation()), PlanRequest{Repo: repoOf(e.GetRepo()), CloneURL: e.GetRepo().GetCloneURL(),
		Number: pr.GetNumber(), Draft: pr.GetDraft()})
	return err
}

// PlanRequest is a pull request to plan.
type PlanRequest struct {
	Repo     nestgh.Repo
	CloneURL string
	Number   int
	// Draft says the pull request is a draft: planned only when
	// github.plan_drafts is on.
	Draft bool
}

// PlanPR plans pull request number at its head: it reads nest.yaml there,
// observes the live fleet, and keeps the plan in the PR's one sticky
// comment and a nest/plan check run (failure, with annotations at each
// mistake, when nest.yaml is invalid). The plan is saved for /nest apply.
func (b *Bot) PlanPR(ctx context.Context, gh GitHub, req PlanRequest) (*PlanResult, error) {
	repo, cloneURL, number, draft := req.Repo, req.CloneURL, req.Number, req.Draft
	ctx, log := b.withLog(ctx, "repository", repo.FullName(), "pr", number)
	log.Info("planning the pull request")
	co, done, err := b.workspace(ctx, gh, cloneURL, fmt.Sprintf("refs/pull/%d/head", number))
	defer done()
	if err != nil {
		return nil, err
	}
	res := &PlanResult{Head: co.head}
	// Everything that decides where credentials go comes from the default
	// branch, as GitHub names it, never from the pull request.
	pr, err := gh.PullRequest(ctx, repo, number)
	if err != nil {
		return res, err
	}
	trusted, why, err := b.trusted(ctx, co, pr.DefaultBranch)
	if err != nil {
		b.observe("plan", "failure")
		return res, b.reportFailure(ctx, gh, repo, number, co.head, repo.Name, co.relative(err), res)
	}
	d, err := fleet.Load(co.file)
	var invalid nest.Errors
	if errors.As(err, &invalid) {
		res.Invalid = invalid
		b.observe("plan", "invalid")
		return res, b.reportInvalid(ctx, gh, repo, number, co.head, invalid, res)
	}
	if err != nil {
		b.observe("plan", "failure")
		return res, b.reportFailure(ctx, gh, repo, number, co.head, repo.Name, co.relative(err), res)
	}
	res.Deferred = d.Trust(trusted)
	if draft && !d.Fleet.GitHub.PlanDrafts {
		res.Skipped = "draft pull request (github.plan_drafts is off)"
		log.Info("a draft; not planned")
		return res, nil
	}
	s, err := fleet.Observe(ctx, d, b.fleetOptions(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		b.observe("plan", "failure")
		return res, b.reportFailure(ctx, gh, repo, number, co.head, d.Fleet.Name, co.relative(fmt.Errorf("observe the live fleet: %w", err)), res)
	}
	defer s.Close()
	plan, err := s.Plan(co.head)
	if err != nil {
		b.observe("plan", "failure")
		return res, b.reportFailure(ctx, gh, repo, number, co.head, d.Fleet.Name, co.relative(err), res)
	}
	if err := ctx.Err(); err != nil {
		return res, err // superseded: a newer head is being planned
	}
	if len(res.Deferred) > 0 {
		plan.Notes = append([]string{deferredNote(res.Deferred, pr.DefaultBranch, why)}, plan.Notes...)
	}
	res.Plan = plan
	res.Parts = reconcile.RenderMarkdown(plan)
	if res.Sticky, err = gh.UpsertSticky(ctx, repo, number, stickyMarker, res.Parts); err != nil {
		return res, err
	}
	conclusion := "success"
	if plan.HasChanges() {
		conclusion = "neutral"
	}
	if _, err := gh.CreateCheckRun(ctx, repo, nestgh.CheckRun{Name: CheckPlan, HeadSHA: co.head, Status: "completed",
		Conclusion: conclusion, Title: plan.Summary().String(), Summary: checkText(res.Parts), DetailsURL: b.cfg.DetailsURL}); err != nil {
		return res, err
	}
	if b.cfg.Artifacts != nil {
		var buf bytes.Buffer
		saved := &reconcile.SavedPlan{Plan: plan, DesiredDigest: d.Digest(), LiveDigest: reconcile.DigestLive(s.Live())}
		if err := saved.Encode(&buf); err == nil {
			if err := b.cfg.Artifacts.PutPlan(ctx, planKey(repo, number, co.head), buf.Bytes()); err != nil {
				log.Error("save the plan", "err", err)
			}
		}
	}
	b.observe("plan", map[bool]string{true: "changes", false: "no-changes"}[plan.HasChanges()])
	log.Info("planned: "+plan.Summary().String(), "head", fleet.ShortRev(co.head), "comment_writes", res.Sticky.Writes())
	return res, nil
}

// planKey names the plan saved for a pull request's head.
func planKey(repo nestgh.Repo, number int, head string) string {
	return fmt.Sprintf("%s/%s/pr-%d/%s", repo.Owner, repo.Name, number, head)
}

// checkText is the plan's first part, without its marker line, for a check
// run's summary.
func checkText(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	text := reconcile.StripMarker(parts[0])
	if len(parts) > 1 {
		text += fmt.Sprintf("\n\n_The plan continues in %d more parts in the pull request's comments._\n", len(parts)-1)
	}
	return text // the client cuts it to what a check run holds
}

// cut shortens s to at most n bytes, on a line boundary where it can.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = "\n…(cut)\n"
	s = s[:n-len(more)]
	if i := strings.LastIndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	return s + more
}

// reportInvalid puts nest.yaml's mistakes in the plan comment and fails
// the check run, with an annotation at each mistake.
func (b *Bot) reportInvalid(ctx context.Context, gh planReporter, repo nestgh.Repo, number int, head string, errs nest.Errors, res *PlanResult) error {
	res.Parts = []string{invalidBody(repo.Name, b.cfg.File, errs)}
	var err error
	if res.Sticky, err = gh.UpsertSticky(ctx, repo, number, stickyMarker, res.Parts); err != nil {
		return err
	}
	var anns []nestgh.Annotation
	for _, e := range errs {
		line, col := max(e.Pos.Line, 1), max(e.Pos.Col, 1)
		msg := e.Msg
		if e.Hint != "" {
			msg += "\n" + e.Hint
		}
		anns = append(anns, nestgh.Annotation{Path: b.cfg.File, StartLine: line, EndLine: line, StartColumn: col, EndColumn: col,
			Level: "failure", Title: cmp.Or(e.Path, b.cfg.File), Message: msg})
	}
	_, err = gh.CreateCheckRun(ctx, repo, nestgh.CheckRun{Name: CheckPlan, HeadSHA: head, Status: "completed", Conclusion: "failure",
		Title: fmt.Sprintf("%s: %d %s", b.cfg.File, len(errs), plural(len(errs), "mistake")), Summary: checkText(res.Parts),
		Annotations: anns, DetailsURL: b.cfg.DetailsURL})
	return err
}

// invalidBody is the plan comment that lists the mistakes in nest.yaml
// (file, as the repository names it) of the fleet.
func invalidBody(fleetName, file string, errs nest.Errors) string {
	var body strings.Builder
	fmt.Fprintf(&body, "%spart=1/1 -->\n### nestbot: `%s` is not valid\n\n", reconcile.MarkdownMarker(fleetName), file)
	fmt.Fprintf(&body, "%d %s; nothing was planned. Fix them and push again.\n\n", len(errs), plural(len(errs), "mistake"))
	var list strings.Builder
	for _, e := range errs {
		shown := *e
		shown.File = file // as the repository names it, not where the bot checked it out
		list.WriteString(shown.Error() + "\n")
	}
	body.WriteString(reconcile.MarkdownFenced(cut(list.String(), 60000)))
	return cut(body.String(), nestgh.MaxCommentChars)
}

// reportFailure says in the plan comment and the check run that planning
// failed, and why.
func (b *Bot) reportFailure(ctx context.Context, gh planReporter, repo nestgh.Repo, number int, head, fleetName string, cause error, res *PlanResult) error {
	res.Parts = []string{failureBody(fleetName, cause)}
	var err error
	if res.Sticky, err = gh.UpsertSticky(ctx, repo, number, stickyMarker, res.Parts); err != nil {
		return errors.Join(cause, err)
	}
	if _, err := gh.CreateCheckRun(ctx, repo, nestgh.CheckRun{Name: CheckPlan, HeadSHA: head, Status: "completed", Conclusion: "failure",
		Title: "The plan failed", Summary: checkText(res.Parts), DetailsURL: b.cfg.DetailsURL}); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// failureBody is the plan comment that says planning failed, and why.
func failureBody(fleetName string, cause error) string {
	body := fmt.Sprintf("%spart=1/1 -->\n### nestbot: the plan failed\n\n%s\nComment `/nest plan` to try again.\n",
		reconcile.MarkdownMarker(fleetName), reconcile.MarkdownFenced(cut(cause.Error(), 60000)))
	return cut(body, nestgh.MaxCommentChars)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
