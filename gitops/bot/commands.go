package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/ducksnest/nestbot/gitops/command"

	gogithub "github.com/google/go-github/v93/github"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
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
func (b *Bot) Command(ctx context.Context, gh GitHub, req CommandRequest) (*PlanResult, error) {
	repo, cloneURL, number, commentID, user, cmd := req.Repo, req.CloneURL, req.Number, req.CommentID, req.User, req.Command
	ctx, log := b.withLog(ctx, "repository", repo.FullName(), "pr", number, "command", cmd.Verb, "user", user)
	log.Info("a /nest command")
	if commentID != 0 {
		if err := gh.React(ctx, repo, commentID, "eyes"); err != nil {
			log.Warn("react to the command", "err", err)
		}
	}
	reply, run, err := commandReply(ctx, gh, req)
	switch {
	case err != nil:
		return nil, err
	case !run:
		return nil, b.reply(ctx, gh, repo, number, reply)
	}
	switch cmd.Verb {
	case "plan":
		return b.PlanPR(ctx, gh, PlanRequest{Repo: repo, CloneURL: cloneURL, Number: number})
	case "apply":
		return nil, b.applyPR(ctx, gh, req)
	default: // unlock
		return nil, b.unlock(ctx, gh, repo, number, user)
	}
}

// commenter comments on pull requests (nestgh.Client).
type commenter interface {
	Comment(ctx context.Context, repo nestgh.Repo, number int, body string) (int64, error)
}

func (b *Bot) reply(ctx context.Context, c commenter, repo nestgh.Repo, number int, body string) error {
	_, err := c.Comment(ctx, repo, number, body)
	return err
}

// lockName is the fleet lock of a repository: one fleet per repository.
func lockName(repo nestgh.Repo) string { return "fleet/" + repo.FullName() }

// unlock breaks the fleet lock and records who did.
func (b *Bot) unlock(ctx context.Context, gh commenter, repo nestgh.Repo, number int, user string) error {
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

// applyPR is /nest apply: it applies the pull request's saved plan when
// the policy allows (pullRefusal, decideApply), onto its head branch.
func (b *Bot) applyPR(ctx context.Context, gh GitHub, req CommandRequest) error {
	repo, number, user := req.Repo, req.Number, req.User
	refuse := func(why string) error {
		return b.reply(ctx, gh, repo, number, fmt.Sprintf("@%s: not applied: %s", user, why))
	}
	pr, err := gh.PullRequest(ctx, repo, number)
	if err != nil {
		return err
	}
	if why := pullRefusal(*pr); why != "" {
		return refuse(why)
	}
	// Not from a fork: the head branch is in this repository, and the
	// certificates this apply commits go onto it.
	co, done, err := b.workspace(ctx, gh, req.CloneURL, pr.HeadRef)
	defer done()
	if err != nil {
		return err
	}
	dec, err := decideApply(ctx, b.cfg.File, prContext{b: b, gh: gh, repo: repo, pr: *pr, co: co, number: number})
	switch {
	case err != nil:
		return err
	case dec.Refusal != "":
		return refuse(dec.Refusal)
	}
	_, err = b.apply(ctx, applyRun{gh: gh, repo: repo, co: co, d: dec.Desired, sha: pr.HeadSHA, branch: pr.HeadRef,
		trigger: "comment", actor: user, prs: []int{number}, saved: dec.Saved})
	return err
}
