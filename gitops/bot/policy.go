package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

// The bot's decisions — who may run which command, when an apply is
// allowed, whether a push applies — read what they need through the small
// interfaces here, which nestgh.Client, the job's checkout and the stores
// satisfy; their tests are plain structs.

// permissions is what the command policy asks of GitHub.
type permissions interface {
	// Permission is user's permission on repo: admin, maintain, write,
	// triage, read or "" (none).
	Permission(ctx context.Context, repo nestgh.Repo, user string) (string, error)
}

// commandReply decides what a /nest command gets before it runs: the
// reply, when it gets only a reply — a refusal for a user without write
// access, the help for help and for a verb not known — or run, for the
// verbs carried out (plan, apply, unlock).
func commandReply(ctx context.Context, p permissions, req CommandRequest) (reply string, run bool, err error) {
	cmd, user := req.Command, req.User
	perm, err := p.Permission(ctx, req.Repo, user)
	if err != nil {
		return "", false, err
	}
	if !nestgh.CanWrite(perm) {
		return fmt.Sprintf("@%s: `/nest %s` needs write access to %s; yours is %s.", user, cmd.Verb, req.Repo, cmp.Or(perm, "none")), false, nil
	}
	switch cmd.Verb {
	case "plan", "apply", "unlock":
		return "", true, nil
	case "help":
		return Help, false, nil
	default:
		return fmt.Sprintf("@%s: `/nest %s` is not a command I know.\n\n%s", user, cmd.Verb, Help), false, nil
	}
}

// pullRefusal says why /nest apply never applies pr, whatever its
// repository's policy: a fork's, a closed one, one into another branch
// than the default; "" when none of these holds.
func pullRefusal(pr nestgh.PR) string {
	switch {
	case pr.Fork:
		return "this pull request comes from a fork, and a fork's pull request never applies."
	case pr.Merged || pr.State == "closed":
		return "this pull request is closed."
	case pr.DefaultBranch == "" || pr.BaseRef != pr.DefaultBranch:
		return fmt.Sprintf("its base is `%s`, not the default branch `%s`: `/nest apply` applies only pull requests into the default branch.", pr.BaseRef, pr.DefaultBranch)
	}
	return ""
}

// applyContext is what the /nest apply policy reads of a pull request
// past pullRefusal: GitHub's view of it, the policy on its default branch,
// its reviews, its saved plan and its nest.yaml (prContext: GitHub, the
// job's checkout, the artifact store).
type applyContext interface {
	Pull() nestgh.PR
	// Policy is nest.yaml on the default branch: nil, with why, when the
	// branch has none that loads; an error when it could not be read.
	Policy(ctx context.Context) (policy *fleet.Desired, why string, err error)
	// Approved says whether someone with write access other than the
	// author approved the head commit.
	Approved(ctx context.Context) (bool, error)
	// KeepsPlans says whether plans are saved at all (an artifact store).
	KeepsPlans() bool
	// SavedPlan is the plan saved for the head commit; store.ErrNotFound
	// when there is none.
	SavedPlan(ctx context.Context) ([]byte, error)
	// Head is the commit checked out, Proposed the nest.yaml there.
	Head() string
	Proposed() (*fleet.Desired, error)
}

// applyDecision is whether /nest apply applies: Refusal says why not;
// else Saved is the plan to apply, of Desired.
type applyDecision struct {
	Refusal string
	Saved   *reconcile.SavedPlan
	Desired *fleet.Desired
}

// decideApply is the /nest apply policy past pullRefusal (file names
// nest.yaml in the repository). It applies only when, on the default
// branch, nest.yaml says github.apply: comment; the pull request is
// approved and mergeable as GitHub says, as github.require requires; it
// changes none of the trusted values (fleet.Desired.Trust: those take
// effect after merge); and its saved plan is of its head. An error is a
// failure to find out.
func decideApply(ctx context.Context, file string, c applyContext) (applyDecision, error) {
	refuse := func(why string) (applyDecision, error) { return applyDecision{Refusal: why}, nil }
	pr := c.Pull()
	// The policy is read from the default branch: a pull request cannot
	// enable applying itself.
	policy, why, err := c.Policy(ctx)
	if err != nil {
		return refuse(oneLine(err.Error()))
	}
	if policy == nil {
		return refuse(why + ".")
	}
	if mode := policy.Fleet.GitHub.Apply; mode != "comment" {
		return refuse(fmt.Sprintf("`/nest apply` is off: `github.apply` is `%s` in %s on %s. Set it to `comment` to allow applying from pull requests.", mode, file, pr.DefaultBranch))
	}
	require := policy.Fleet.GitHub.Require
	if slices.Contains(require, "approved") {
		ok, err := c.Approved(ctx)
		if err != nil {
			return applyDecision{}, err
		}
		if !ok {
			return refuse("it needs an approving review of its head commit " + fleet.ShortRev(pr.HeadSHA) + " by someone with write access other than its author.")
		}
	}
	if slices.Contains(require, "mergeable") {
		if pr.Mergeable == nil || !*pr.Mergeable || !mergeableState(pr.MergeableState) {
			return refuse(fmt.Sprintf("GitHub does not let it merge yet (mergeable state %q): resolve conflicts, and let the required checks and reviews of branch protection pass.", cmp.Or(pr.MergeableState, "unknown")))
		}
	}
	if !c.KeepsPlans() {
		return refuse("this nestbot keeps no saved plans (no artifact store is configured).")
	}
	data, err := c.SavedPlan(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("there is no plan for the head commit " + fleet.ShortRev(pr.HeadSHA) + ": comment `/nest plan` first.")
	}
	if err != nil {
		return applyDecision{}, err
	}
	saved, err := reconcile.DecodeSavedPlan("saved plan", data)
	if err != nil {
		return applyDecision{}, err
	}
	if c.Head() != pr.HeadSHA {
		return refuse("the pull request moved on while I looked; comment `/nest plan`, then `/nest apply`.")
	}
	d, err := c.Proposed()
	if err != nil {
		return refuse(fmt.Sprintf("`%s` does not load at %s: %v", file, fleet.ShortRev(pr.HeadSHA), oneLine(err.Error())))
	}
	if changed := d.Trust(policy); len(changed) > 0 {
		return refuse(fmt.Sprintf("it changes %s, which take effect after merge: merge it instead.", strings.Join(changed, ", ")))
	}
	return applyDecision{Saved: saved, Desired: d}, nil
}

// mergeableState says whether GitHub's mergeable_state lets a pull
// request merge: clean; unstable (only checks that are not required fail);
// has_hooks. Blocked (branch protection: a required check or review is
// missing), behind, dirty, draft and unknown do not.
func mergeableState(s string) bool {
	switch s {
	case "clean", "unstable", "has_hooks":
		return true
	}
	return false
}

// prContext is applyContext from GitHub, the job's checkout of the pull
// request's head and the artifact store.
type prContext struct {
	b      *Bot
	gh     approvals
	repo   nestgh.Repo
	pr     nestgh.PR
	co     *checkout
	number int
}

func (c prContext) Pull() nestgh.PR { return c.pr }
func (c prContext) Policy(ctx context.Context) (*fleet.Desired, string, error) {
	return c.b.trusted(ctx, c.co, c.pr.DefaultBranch)
}
func (c prContext) Approved(ctx context.Context) (bool, error) {
	return c.gh.Approved(ctx, c.repo, c.number, c.pr.HeadSHA, c.pr.Author)
}
func (c prContext) KeepsPlans() bool { return c.b.cfg.Artifacts != nil }
func (c prContext) SavedPlan(ctx context.Context) ([]byte, error) {
	return c.b.cfg.Artifacts.GetPlan(ctx, planKey(c.repo, c.number, c.pr.HeadSHA))
}
func (c prContext) Head() string                      { return c.co.head }
func (c prContext) Proposed() (*fleet.Desired, error) { return fleet.Load(c.co.file) }

// pushBranch is the branch a push applies, or why it applies nothing: a
// push to any other branch than the repository's default (as GitHub names
// it), whatever its nest.yaml says.
func pushBranch(p Push) (branch, skip string) {
	branch, isBranch := strings.CutPrefix(p.Ref, "refs/heads/")
	if !isBranch || p.DefaultBranch == "" || branch != p.DefaultBranch {
		return "", fmt.Sprintf("%s is not the repository's default branch %s", p.Ref, cmp.Or(p.DefaultBranch, "(unknown)"))
	}
	return branch, ""
}

// pushSkip says why a push to branch, checked out at head, applies
// nothing: github.default_branch in its nest.yaml (d, of file; nil when it
// does not load) names another branch — it only confirms the default
// branch —, the branch moved on (superseded: the newer push applies), or
// github.apply is off. "" applies, or, when invalid, reports nest.yaml's
// mistakes.
func pushSkip(file string, d *fleet.Desired, invalid bool, branch, head, sha string) (skip string, superseded bool) {
	switch {
	case d != nil && d.Fleet.GitHub.DefaultBranch != branch:
		return fmt.Sprintf("github.default_branch in %s is %s, but the repository's default branch is %s: nestbot applies only the repository's default branch, so set github.default_branch to it",
			file, d.Fleet.GitHub.DefaultBranch, branch), false
	case head != sha:
		return "superseded by " + fleet.ShortRev(head), true
	case invalid:
		return "", false
	case d.Fleet.GitHub.Apply == "off":
		return "github.apply is off", false
	}
	return "", false
}
