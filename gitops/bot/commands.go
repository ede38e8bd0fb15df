package bot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/gitops/command"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

// Help is the reply to /nest help and to an unknown command.
const Help = "nestbot commands, in a comment on a pull request (write access needed):\n\n" +
	"| command | what it does |\n| --- | --- |\n" +
	"| `/nest plan` | plan this pull request again, against the live fleet now |\n" +
	"| `/nest apply` | apply this pull request's plan before merge — only when `github.apply: comment` in nest.yaml on the default branch, the pull request is approved and mergeable, and the plan is current |\n" +
	"| `/nest unlock` | release the fleet lock a stopped apply left behind (recorded in the audit log) |\n" +
	"| `/nest help` | this list |\n\n" +
	"After merge, a push to the default branch applies the whole plan."

// Command is a /nest command as written in a comment.
type Command struct {
	Verb string
	Args []string
}

// ParseCommand reads the command on the comment's first line (see
// command.Fields); ok is false when the comment is not a /nest command. A
// bare /nest asks for the help.
func ParseCommand(body string) (cmd Command, ok bool) {
	args, ok := command.Fields(body)
	switch {
	case !ok:
		return Command{}, false
	case len(args) == 0:
		return Command{Verb: "help"}, true
	}
	return Command{Verb: strings.ToLower(args[0]), Args: args[1:]}, true
}

// IsBot says whether an account is a bot's, whose comments are ignored.
func IsBot(u *gogithub.User) bool {
	return u.GetType() == "Bot" || strings.HasSuffix(u.GetLogin(), "[bot]")
}

// OnComment handles an issue_comment event's payload: a /nest command on
// a pull request. The result is the plan, when the command planned.
func (b *Bot) OnComment(ctx context.Context, payload []byte) (*PlanResult, error) {
	ev, err := gogithub.ParseWebHook("issue_comment", payload)
	if err != nil {
		return nil, fmt.Errorf("issue_comment event: %w", err)
	}
	return b.onComment(ctx, ev.(*gogithub.IssueCommentEvent))
}

func (b *Bot) onComment(ctx context.Context, e *gogithub.IssueCommentEvent) (*PlanResult, error) {
	if e.GetAction() != "created" || !e.GetIssue().IsPullRequest() {
		return nil, nil
	}
	cmd, ok := ParseCommand(e.GetComment().GetBody())
	if !ok || IsBot(e.GetComment().GetUser()) || IsBot(e.GetSender()) {
		return nil, nil
	}
	return b.Command(ctx, b.client(e.GetInstallation()), CommandRequest{Repo: repoOf(e.GetRepo()), CloneURL: e.GetRepo().GetCloneURL(),
		Number: e.GetIssue().GetNumber(), CommentID: e.GetComment().GetID(), User: e.GetComment().GetUser().GetLogin(), Command: cmd})
}

// CommandRequest is a /nest command written in a comment on a pull
// request.
type CommandRequest struct {
	Repo      nestgh.Repo
	CloneURL  string
	Number    int    // the pull request's
	CommentID int64  // the comment it was written in; 0: no comment to react to
	User      string // who wrote it
	Command   Command
}

// Command carries out a /nest command: an eyes reaction acknowledges it, a
// user without write access is refused with a reply, an unknown verb gets
// the help. The result is the plan, when the command planned.
func (b *Bot) Command(ctx context.Context, gh *nestgh.Client, req CommandRequest) (*PlanResult, error) {
	repo, cloneURL, number, commentID, user, cmd := req.Repo, req.CloneURL, req.Number, req.CommentID, req.User, req.Command
	ctx, log := b.withLog(ctx, "repository", repo.FullName(), "pr", number, "command", cmd.Verb, "user", user)
	log.Info("a /nest command")
	if commentID != 0 {
		if err := gh.React(ctx, repo, commentID, "eyes"); err != nil {
			log.Warn("react to the command", "err", err)
		}
	}
	perm, err := gh.Permission(ctx, repo, user)
	if err != nil {
		return nil, err
	}
	if !nestgh.CanWrite(perm) {
		return nil, b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s: `/nest %s` needs write access to %s; yours is %s.", user, cmd.Verb, repo, cmp.Or(perm, "none")))
	}
	switch cmd.Verb {
	case "plan":
		return b.PlanPR(ctx, gh, repo, cloneURL, number, false)
	case "apply":
		return nil, b.applyPR(ctx, gh, repo, cloneURL, number, user)
	case "unlock":
		return nil, b.unlock(ctx, gh, repo, number, user)
	case "help":
		return nil, b.reply(ctx, gh, repo, number, Help)
	default:
		return nil, b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s: `/nest %s` is not a command I know.\n\n%s", user, cmd.Verb, Help))
	}
}

func (b *Bot) reply(ctx context.Context, gh *nestgh.Client, repo nestgh.Repo, number int, body string) error {
	_, err := gh.Comment(ctx, repo, number, body)
	return err
}

// lockName is the fleet lock of a repository: one fleet per repository.
func lockName(repo nestgh.Repo) string { return "fleet/" + repo.FullName() }

// unlock breaks the fleet lock and records who did.
func (b *Bot) unlock(ctx context.Context, gh *nestgh.Client, repo nestgh.Repo, number int, user string) error {
	l, ok, err := b.cfg.Locker.Break(ctx, lockName(repo))
	if err != nil {
		return err
	}
	if !ok {
		return b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s: the fleet of %s is not locked.", user, repo))
	}
	if b.cfg.Artifacts != nil {
		now := b.now()
		if err := b.cfg.Artifacts.Audit(ctx, store.AuditRecord{Fleet: repo.FullName(), Trigger: "unlock", Actor: user, Started: now, Finished: now,
			Result: "unlocked", Error: fmt.Sprintf("released the lock held by %s since %s (token %d)", l.Owner, l.Acquired.UTC().Format("2006-01-02 15:04:05Z"), l.Token)}); err != nil {
			b.log(ctx).Error("audit the unlock", "err", err)
		}
	}
	b.log(ctx).Info("broke the fleet lock", "holder", l.Owner)
	return b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s released the fleet lock held by `%s` since %s. Recorded in the audit log.",
		user, l.Owner, l.Acquired.UTC().Format("2006-01-02 15:04:05 UTC")))
}

// applyPR is /nest apply. It applies only when, on the repository's
// default branch (as GitHub names it), nest.yaml says github.apply:
// comment; the pull request is into that branch and not from a fork; it is
// approved by a writer other than its author and mergeable as GitHub says
// (required checks and branch protection satisfied), as required; it
// changes none of the trusted values (fleet.Desired.Trust: those take
// effect after merge); and its saved plan is still current.
func (b *Bot) applyPR(ctx context.Context, gh *nestgh.Client, repo nestgh.Repo, cloneURL string, number int, user string) error {
	refuse := func(why string) error {
		return b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s: not applied: %s", user, why))
	}
	pr, err := gh.PullRequest(ctx, repo, number)
	if err != nil {
		return err
	}
	switch {
	case pr.Fork:
		return refuse("this pull request comes from a fork, and a fork's pull request never applies.")
	case pr.Merged || pr.State == "closed":
		return refuse("this pull request is closed.")
	case pr.DefaultBranch == "" || pr.BaseRef != pr.DefaultBranch:
		return refuse(fmt.Sprintf("its base is `%s`, not the default branch `%s`: `/nest apply` applies only pull requests into the default branch.", pr.BaseRef, pr.DefaultBranch))
	}
	// Not from a fork: the head branch is in this repository, and the
	// certificates this apply commits go onto it.
	co, done, err := b.workspace(ctx, gh, cloneURL, pr.HeadRef)
	defer done()
	if err != nil {
		return err
	}
	// The policy is read from the default branch: a pull request cannot
	// enable applying itself.
	policy, why, err := b.trusted(ctx, co, pr.DefaultBranch)
	if err != nil {
		return refuse(oneLine(err.Error()))
	}
	if policy == nil {
		return refuse(why + ".")
	}
	if mode := policy.Fleet.GitHub.Apply; mode != "comment" {
		return refuse(fmt.Sprintf("`/nest apply` is off: `github.apply` is `%s` in %s on %s. Set it to `comment` to allow applying from pull requests.", mode, b.cfg.File, pr.DefaultBranch))
	}
	require := policy.Fleet.GitHub.Require
	if slices.Contains(require, "approved") {
		ok, err := gh.Approved(ctx, repo, number, pr.HeadSHA, pr.Author)
		if err != nil {
			return err
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
	if b.cfg.Artifacts == nil {
		return refuse("this nestbot keeps no saved plans (no artifact store is configured).")
	}
	data, err := b.cfg.Artifacts.GetPlan(ctx, planKey(repo, number, pr.HeadSHA))
	if errors.Is(err, store.ErrNotFound) {
		return refuse("there is no plan for the head commit " + fleet.ShortRev(pr.HeadSHA) + ": comment `/nest plan` first.")
	}
	if err != nil {
		return err
	}
	saved, err := reconcile.DecodeSavedPlan("saved plan", data)
	if err != nil {
		return err
	}
	if co.head != pr.HeadSHA {
		return refuse("the pull request moved on while I looked; comment `/nest plan`, then `/nest apply`.")
	}
	d, err := fleet.Load(co.file)
	if err != nil {
		return refuse(fmt.Sprintf("`%s` does not load at %s: %v", b.cfg.File, fleet.ShortRev(pr.HeadSHA), oneLine(err.Error())))
	}
	if changed := d.Trust(policy); len(changed) > 0 {
		return refuse(fmt.Sprintf("it changes %s, which take effect after merge: merge it instead.", strings.Join(changed, ", ")))
	}
	_, err = b.apply(ctx, applyRun{gh: gh, repo: repo, co: co, d: d, sha: pr.HeadSHA, branch: pr.HeadRef,
		trigger: "comment", actor: user, prs: []int{number}, saved: saved})
	return err
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
