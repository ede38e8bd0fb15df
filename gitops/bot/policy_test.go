package bot

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

// The policy tests: the bot's decisions over plain structs, with no lab,
// no network and no git.

var policyRepo = nestgh.Repo{Owner: "ducksnest", Name: "fleet"}

// permissionsOf is a repository's permissions: user → permission.
type permissionsOf map[string]string

func (p permissionsOf) Permission(_ context.Context, _ nestgh.Repo, user string) (string, error) {
	return p[user], nil
}

type failingPermissions struct{ err error }

func (p failingPermissions) Permission(context.Context, nestgh.Repo, string) (string, error) {
	return "", p.err
}

func TestPolicyCommandReply(t *testing.T) {
	perms := permissionsOf{"owner": "admin", "writer": "write", "maintainer": "maintain", "triager": "triage", "reader": "read"}
	for _, c := range []struct {
		name, user, verb string
		run              bool
		reply            []string // what the reply says, when there is only a reply
	}{
		{"plan runs", "writer", "plan", true, nil},
		{"apply runs", "maintainer", "apply", true, nil},
		{"unlock runs", "owner", "unlock", true, nil},
		{"help is the help", "writer", "help", false, []string{Help}},
		{"an unknown verb gets the help", "owner", "frobnicate", false, []string{"@owner: `/nest frobnicate` is not a command I know.", "/nest unlock"}},
		{"triage is not write access", "triager", "apply", false, []string{"@triager: `/nest apply` needs write access to ducksnest/fleet; yours is triage."}},
		{"read is not write access", "reader", "plan", false, []string{"yours is read."}},
		{"no access at all", "stranger", "help", false, []string{"@stranger: `/nest help` needs write access", "yours is none."}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reply, run, err := commandReply(context.Background(), perms, CommandRequest{Repo: policyRepo, User: c.user, Command: Command{Verb: c.verb}})
			if err != nil {
				t.Fatal(err)
			}
			if run != c.run {
				t.Errorf("run = %v, want %v (reply %q)", run, c.run, reply)
			}
			if c.run && reply != "" {
				t.Errorf("a command that runs got the reply %q", reply)
			}
			for _, want := range c.reply {
				if !strings.Contains(reply, want) {
					t.Errorf("reply %q does not say %q", reply, want)
				}
			}
		})
	}
	t.Run("a failure to ask is an error, not a refusal", func(t *testing.T) {
		reply, run, err := commandReply(context.Background(), failingPermissions{errors.New("502")}, CommandRequest{Repo: policyRepo, User: "writer", Command: Command{Verb: "plan"}})
		if err == nil || run || reply != "" {
			t.Errorf("commandReply = %q, %v, %v; want the error alone", reply, run, err)
		}
	})
}

// TestPolicyBotCommentsAreIgnored: a /nest command a bot wrote, or a bot
// sent, is not answered: onComment returns before it asks GitHub anything
// (this Bot has no client to ask).
func TestPolicyBotCommentsAreIgnored(t *testing.T) {
	b := &Bot{}
	for _, c := range []struct {
		name           string
		author, sender gogithub.User
	}{
		{"a [bot] login", gogithub.User{Login: new("dependabot[bot]"), Type: new("User")}, gogithub.User{Login: new("dependabot[bot]")}},
		{"a Bot account", gogithub.User{Login: new("renovate"), Type: new("Bot")}, gogithub.User{Login: new("owner")}},
		{"sent by a bot", gogithub.User{Login: new("owner")}, gogithub.User{Login: new("nestbot[bot]")}},
	} {
		e := &gogithub.IssueCommentEvent{Action: new("created"),
			Issue:   &gogithub.Issue{Number: new(1), PullRequestLinks: &gogithub.PullRequestLinks{}},
			Comment: &gogithub.IssueComment{Body: new("/nest help"), User: &c.author}, Sender: &c.sender}
		if res, err := b.onComment(context.Background(), e); res != nil || err != nil {
			t.Errorf("%s: onComment = %v, %v; want it ignored", c.name, res, err)
		}
	}
}

func TestPolicyPullRefusal(t *testing.T) {
	open := nestgh.PR{State: "open", BaseRef: "main", DefaultBranch: "main"}
	with := func(edit func(*nestgh.PR)) nestgh.PR { pr := open; edit(&pr); return pr }
	for _, c := range []struct {
		name string
		pr   nestgh.PR
		want string
	}{
		{"an open pull request into the default branch", open, ""},
		{"a fork's", with(func(p *nestgh.PR) { p.Fork = true }), "comes from a fork"},
		{"a fork's, even when closed", with(func(p *nestgh.PR) { p.Fork, p.State = true, "closed" }), "comes from a fork"},
		{"merged", with(func(p *nestgh.PR) { p.Merged = true }), "is closed"},
		{"closed", with(func(p *nestgh.PR) { p.State = "closed" }), "is closed"},
		{"into another branch", with(func(p *nestgh.PR) { p.BaseRef = "release" }), "its base is `release`, not the default branch `main`"},
		{"the default branch unknown", with(func(p *nestgh.PR) { p.DefaultBranch = "" }), "not the default branch ``"},
	} {
		got := pullRefusal(c.pr)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: pullRefusal = %q, want %q", c.name, got, c.want)
		}
	}
}

// pullFacts is applyContext as plain values.
type pullFacts struct {
	pr          nestgh.PR
	policy      *fleet.Desired
	why         string
	policyErr   error
	approved    bool
	approvedErr error
	keepsPlans  bool
	saved       []byte
	savedErr    error
	head        string
	proposed    *fleet.Desired
	proposedErr error
}

func (f pullFacts) Pull() nestgh.PR { return f.pr }
func (f pullFacts) Policy(context.Context) (*fleet.Desired, string, error) {
	return f.policy, f.why, f.policyErr
}
func (f pullFacts) Approved(context.Context) (bool, error)    { return f.approved, f.approvedErr }
func (f pullFacts) KeepsPlans() bool                          { return f.keepsPlans }
func (f pullFacts) SavedPlan(context.Context) ([]byte, error) { return f.saved, f.savedErr }
func (f pullFacts) Head() string                              { return f.head }
func (f pullFacts) Proposed() (*fleet.Desired, error)         { return f.proposed, f.proposedErr }
func desiredWith(gh nest.GitHub) *fleet.Desired {
	return &fleet.Desired{Fleet: &nest.Fleet{GitHub: gh}}
}

func encodeSaved(t *testing.T, plan *reconcile.Plan) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := (&reconcile.SavedPlan{Plan: plan, DesiredDigest: "d", LiveDigest: "l"}).Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestPolicyDecideApply(t *testing.T) {
	const head = "1111111111111111111111111111111111111111"
	both := nest.GitHub{Apply: "comment", Require: []string{"approved", "mergeable"}}
	plan := &reconcile.Plan{Revision: head}
	yes := true
	// ready is a pull request every requirement lets apply.
	ready := func() pullFacts {
		return pullFacts{pr: nestgh.PR{HeadSHA: head, DefaultBranch: "main", Mergeable: &yes, MergeableState: "clean"},
			policy: desiredWith(both), approved: true, keepsPlans: true, saved: encodeSaved(t, plan), head: head, proposed: desiredWith(both)}
	}
	with := func(edit func(*pullFacts)) pullFacts { f := ready(); edit(&f); return f }
	no := false
	for _, c := range []struct {
		name    string
		facts   pullFacts
		refusal string // "" applies
		err     bool
	}{
		{"approved, mergeable, planned, current", ready(), "", false},
		{"the default branch has no nest.yaml", with(func(f *pullFacts) { f.policy, f.why = nil, "main has no `nest.yaml` yet" }), "main has no `nest.yaml` yet.", false},
		{"the default branch's nest.yaml cannot be read", with(func(f *pullFacts) {
			f.policy, f.policyErr = nil, errors.New("fetch the default branch main: gone\nmore")
		}), "fetch the default branch main: gone", false},
		{"github.apply is merge on the default branch", with(func(f *pullFacts) { f.policy = desiredWith(nest.GitHub{Apply: "merge"}) }),
			"`/nest apply` is off: `github.apply` is `merge` in nest.yaml on main. Set it to `comment`", false},
		{"github.apply is off on the default branch, comment in the pull request", with(func(f *pullFacts) {
			f.policy = desiredWith(nest.GitHub{Apply: "off"})
		}), "`github.apply` is `off`", false},
		{"not approved", with(func(f *pullFacts) { f.approved = false }), "it needs an approving review of its head commit 1111111", false},
		{"approval not required", with(func(f *pullFacts) {
			f.approved = false
			f.policy = desiredWith(nest.GitHub{Apply: "comment", Require: []string{"mergeable"}})
			f.proposed = desiredWith(nest.GitHub{Apply: "comment", Require: []string{"mergeable"}})
		}), "", false},
		{"the reviews cannot be read", with(func(f *pullFacts) { f.approvedErr = errors.New("502") }), "", true},
		{"mergeability still computing", with(func(f *pullFacts) { f.pr.Mergeable = nil }), `GitHub does not let it merge yet (mergeable state "clean")`, false},
		{"conflicts", with(func(f *pullFacts) { f.pr.Mergeable, f.pr.MergeableState = &no, "dirty" }), `mergeable state "dirty"`, false},
		{"blocked by branch protection", with(func(f *pullFacts) { f.pr.MergeableState = "blocked" }), `mergeable state "blocked"`, false},
		{"unstable: a check that is not required fails", with(func(f *pullFacts) { f.pr.MergeableState = "unstable" }), "", false},
		{"no state said", with(func(f *pullFacts) { f.pr.MergeableState = "" }), `mergeable state "unknown"`, false},
		{"no artifact store", with(func(f *pullFacts) { f.keepsPlans = false }), "this nestbot keeps no saved plans", false},
		{"no plan for the head", with(func(f *pullFacts) { f.saved, f.savedErr = nil, store.ErrNotFound }), "there is no plan for the head commit 1111111: comment `/nest plan` first.", false},
		{"the store fails", with(func(f *pullFacts) { f.saved, f.savedErr = nil, errors.New("disk") }), "", true},
		{"the saved plan is not one", with(func(f *pullFacts) { f.saved = []byte("{}") }), "", true},
		{"the head moved on", with(func(f *pullFacts) { f.head = "2222222222222222222222222222222222222222" }), "the pull request moved on while I looked", false},
		{"nest.yaml does not load at the head", with(func(f *pullFacts) { f.proposed, f.proposedErr = nil, errors.New("nest.yaml:3:1: bad\nhint") }),
			"`nest.yaml` does not load at 1111111: nest.yaml:3:1: bad", false},
		{"it changes a trusted value", with(func(f *pullFacts) {
			f.proposed = desiredWith(both)
			f.proposed.Fleet.Tailnet.ControlURL = "https://evil.example"
		}), "it changes tailnet.control_url, which take effect after merge: merge it instead.", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dec, err := decideApply(context.Background(), "nest.yaml", c.facts)
			switch {
			case c.err:
				if err == nil {
					t.Errorf("decideApply = %+v, want an error", dec)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if c.refusal == "" {
				if dec.Refusal != "" || dec.Saved == nil || dec.Saved.Plan.Revision != head || dec.Desired != c.facts.proposed {
					t.Errorf("decideApply = %+v, want the saved plan of the head applied", dec)
				}
				return
			}
			if !strings.Contains(dec.Refusal, c.refusal) || strings.Contains(dec.Refusal, "\n") {
				t.Errorf("refusal %q, want one line saying %q", dec.Refusal, c.refusal)
			}
			if dec.Saved != nil {
				t.Error("a refused apply has a plan to apply")
			}
		})
	}
}

func TestPolicyPush(t *testing.T) {
	for _, c := range []struct {
		name         string
		push         Push
		branch, skip string
	}{
		{"the default branch", Push{Ref: "refs/heads/main", DefaultBranch: "main"}, "main", ""},
		{"another branch", Push{Ref: "refs/heads/dev", DefaultBranch: "main"}, "", "refs/heads/dev is not the repository's default branch main"},
		{"a tag", Push{Ref: "refs/tags/main", DefaultBranch: "main"}, "", "refs/tags/main is not the repository's default branch main"},
		{"the default branch unknown", Push{Ref: "refs/heads/main"}, "", "refs/heads/main is not the repository's default branch (unknown)"},
	} {
		branch, skip := pushBranch(c.push)
		if branch != c.branch || skip != c.skip {
			t.Errorf("%s: pushBranch = %q, %q; want %q, %q", c.name, branch, skip, c.branch, c.skip)
		}
	}
	const sha, newer = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	merge := desiredWith(nest.GitHub{Apply: "merge", DefaultBranch: "main"})
	for _, c := range []struct {
		name       string
		d          *fleet.Desired
		invalid    bool
		head       string
		skip       string
		superseded bool
	}{
		{"applies", merge, false, sha, "", false},
		{"github.default_branch names another", desiredWith(nest.GitHub{DefaultBranch: "trunk"}), false, sha,
			"github.default_branch in nest.yaml is trunk, but the repository's default branch is main: nestbot applies only the repository's default branch, so set github.default_branch to it", false},
		{"the branch moved on", merge, false, newer, "superseded by 2222222", true},
		{"moved on, and invalid: the newer push reports it", nil, true, newer, "superseded by 2222222", true},
		{"invalid: reported, not skipped", nil, true, sha, "", false},
		{"invalid though it loads, and off: reported", desiredWith(nest.GitHub{Apply: "off", DefaultBranch: "main"}), true, sha, "", false},
		{"github.apply is off", desiredWith(nest.GitHub{Apply: "off", DefaultBranch: "main"}), false, sha, "github.apply is off", false},
	} {
		skip, superseded := pushSkip("nest.yaml", c.d, c.invalid, "main", c.head, sha)
		if skip != c.skip || superseded != c.superseded {
			t.Errorf("%s: pushSkip = %q, %v; want %q, %v", c.name, skip, superseded, c.skip, c.superseded)
		}
	}
}

// replies keeps the comments the bot writes.
type replies struct{ bodies []string }

func (r *replies) Comment(_ context.Context, _ nestgh.Repo, _ int, body string) (int64, error) {
	r.bodies = append(r.bodies, body)
	return int64(len(r.bodies)), nil
}

// oneLock is a Locker of one lock, held by holder ("" free).
type oneLock struct {
	store.Locker // the methods a test does not expect panic
	holder       store.Lease
	held         bool
	acquired     int
}

func (l *oneLock) Acquire(_ context.Context, name, owner string, ttl time.Duration) (store.Lease, error) {
	if l.held {
		return store.Lease{}, &store.LockedError{Lease: l.holder}
	}
	l.acquired++
	l.holder, l.held = store.Lease{Name: name, Owner: owner, Token: uint64(l.acquired)}, true
	return l.holder, nil
}

func (l *oneLock) Break(context.Context, string) (store.Lease, bool, error) {
	was, held := l.holder, l.held
	l.holder, l.held = store.Lease{}, false
	return was, held, nil
}

// auditLog keeps the audit records.
type auditLog struct {
	store.Artifacts
	records []store.AuditRecord
}

func (a *auditLog) Audit(_ context.Context, rec store.AuditRecord) error {
	a.records = append(a.records, rec)
	return nil
}

func TestPolicyLocks(t *testing.T) {
	ctx := context.Background()
	since := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	stuck := store.Lease{Name: lockName(policyRepo), Owner: "replica-that-died", Token: 7, Acquired: since, Expires: since.Add(time.Hour)}

	t.Run("a comment is told who holds the lock", func(t *testing.T) {
		lock, said := &oneLock{holder: stuck, held: true}, &replies{}
		b := &Bot{cfg: Config{Locker: lock, Owner: "me", LockTTL: time.Minute}}
		_, err := b.acquire(ctx, said, applyRun{repo: policyRepo, trigger: "comment", actor: "writer", prs: []int{4}})
		var locked *store.LockedError
		if !errors.As(err, &locked) || locked.Lease.Owner != "replica-that-died" {
			t.Errorf("acquire: %v, want the lock's holder", err)
		}
		if len(said.bodies) != 1 || !strings.HasPrefix(said.bodies[0], "@writer: not applied: lock fleet/ducksnest/fleet is held by replica-that-died since 2026-12-08T03:00:00Z") {
			t.Errorf("replies %q, want one saying who holds the lock", said.bodies)
		}
	})
	t.Run("a free lock is taken, in the repository's name", func(t *testing.T) {
		lock, said := &oneLock{}, &replies{}
		b := &Bot{cfg: Config{Locker: lock, Owner: "me", LockTTL: time.Minute}}
		lease, err := b.acquire(ctx, said, applyRun{repo: policyRepo, trigger: "push"})
		if err != nil || lease.Name != "fleet/ducksnest/fleet" || lease.Owner != "me" || len(said.bodies) != 0 {
			t.Errorf("acquire = %+v, %v (replies %q); want the lease, unsaid", lease, err, said.bodies)
		}
	})
	t.Run("/nest unlock breaks a stuck lock and records who did", func(t *testing.T) {
		lock, said, audit := &oneLock{holder: stuck, held: true}, &replies{}, &auditLog{}
		b := &Bot{cfg: Config{Locker: lock, Artifacts: audit}}
		if err := b.unlock(ctx, said, policyRepo, 4, "owner"); err != nil {
			t.Fatal(err)
		}
		if lock.held {
			t.Error("the lock is still held after /nest unlock")
		}
		if want := "@owner released the fleet lock held by `replica-that-died` since 2026-12-08 03:00:00 UTC. Recorded in the audit log."; len(said.bodies) != 1 || said.bodies[0] != want {
			t.Errorf("replies %q, want %q", said.bodies, want)
		}
		if len(audit.records) != 1 || audit.records[0].Trigger != "unlock" || audit.records[0].Actor != "owner" || audit.records[0].Result != "unlocked" ||
			!strings.Contains(audit.records[0].Error, "replica-that-died") {
			t.Errorf("audit log after /nest unlock: %+v", audit.records)
		}
	})
	t.Run("/nest unlock of a free lock says so and records nothing", func(t *testing.T) {
		lock, said, audit := &oneLock{}, &replies{}, &auditLog{}
		b := &Bot{cfg: Config{Locker: lock, Artifacts: audit}}
		if err := b.unlock(ctx, said, policyRepo, 4, "owner"); err != nil {
			t.Fatal(err)
		}
		if len(said.bodies) != 1 || said.bodies[0] != "@owner: the fleet of ducksnest/fleet is not locked." || len(audit.records) != 0 {
			t.Errorf("replies %q, audit %+v", said.bodies, audit.records)
		}
	})
}

// TestPolicyStickyComment: what the plan comment becomes when nest.yaml is
// invalid or planning failed: one part, marked as the fleet's, naming
// files as the repository does.
func TestPolicyStickyComment(t *testing.T) {
	errs := nest.Errors{
		{File: "/tmp/job-1/repo/nest.yaml", Pos: nest.Pos{Line: 7, Col: 5}, Path: "hosts.web.colour", Msg: "unknown field"},
		{File: "/tmp/job-1/repo/nest.yaml", Msg: "no hosts", Hint: "add one"},
	}
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"invalid", invalidBody("fleet", "nest.yaml", errs), []string{reconcile.MarkdownMarker("fleet") + "part=1/1 -->\n### nestbot: `nest.yaml` is not valid\n\n2 mistakes; nothing was planned.",
			"nest.yaml:7:5: hosts.web.colour: unknown field", "add one"}},
		{"one mistake", invalidBody("fleet", "infra/nest.yaml", errs[:1]), []string{"1 mistake; nothing", "infra/nest.yaml:7:5:"}},
		{"failed", failureBody("fleet", errors.New("observe the live fleet: boom")), []string{reconcile.MarkdownMarker("fleet") + "part=1/1 -->\n### nestbot: the plan failed",
			"observe the live fleet: boom", "Comment `/nest plan` to try again."}},
	} {
		if !strings.HasPrefix(c.body, stickyMarker) {
			t.Errorf("%s: the comment does not start with the sticky marker: %q", c.name, c.body)
		}
		for _, w := range c.want {
			if !strings.Contains(c.body, w) {
				t.Errorf("%s: the comment does not say %q:\n%s", c.name, w, c.body)
			}
		}
		if strings.Contains(c.body, "/tmp/job-1") {
			t.Errorf("%s: the comment names the bot's checkout:\n%s", c.name, c.body)
		}
	}
	long := failureBody("fleet", errors.New(strings.Repeat("x", 2*nestgh.MaxCommentChars)))
	if len(long) > nestgh.MaxCommentChars || !strings.Contains(long, "…(cut)") {
		t.Errorf("a long failure is %d bytes (at most %d), cut: %v", len(long), nestgh.MaxCommentChars, strings.Contains(long, "…(cut)"))
	}
}
