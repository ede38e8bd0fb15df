package bot

import (
	"context"

	nestgh "github.com/ducksnest/nestbot/gitops/github"
)

// GitHub is what the handlers ask of GitHub, as one installation of the
// App or as a token: *nestgh.Client is one. It is the small interfaces
// below, each what one part of the bot uses:
//
//   - GitToken, InstallationID: a job's checkout clones with the token
//     (gitCredentials);
//   - PullRequest, Approved, PullsForCommit, Permission: what a plan, a
//     /nest command and an apply read of pull requests and of who may
//     write (pullReader, approvals, commitPulls, permissions);
//   - UpsertSticky, CreateCheckRun: a plan's comment and check run
//     (stickyWriter, checkRunner);
//   - React, Comment: a command's acknowledgement and replies, an apply's
//     report (reactor, commenter);
//   - CreateDeployment, DeploymentStatus: an apply as a Deployment
//     (deployer);
//   - SyncIssue: the drift issue (issueSyncer).
type GitHub interface {
	gitCredentials
	pullReader
	approvals
	commitPulls
	permissions
	stickyWriter
	checkRunner
	reactor
	commenter
	deployer
	issueSyncer
}

var _ GitHub = (*nestgh.Client)(nil)

// gitCredentials are what a job's checkout clones with.
type gitCredentials interface {
	// GitToken is the token for git over HTTPS.
	GitToken(ctx context.Context) (string, error)
	// InstallationID is the App's installation the token is minted for;
	// 0 for a token given to nestbot (the runner's to mask).
	InstallationID() int64
}

// pullReader reads a pull request: a plan takes its default branch from
// it, /nest apply its state.
type pullReader interface {
	PullRequest(ctx context.Context, repo nestgh.Repo, number int) (*nestgh.PR, error)
}

// approvals says whether a pull request's head is approved (the
// github.require: approved of /nest apply).
type approvals interface {
	Approved(ctx context.Context, repo nestgh.Repo, number int, headSHA, author string) (bool, error)
}

// commitPulls finds the pull requests of a pushed commit: those merged are
// told what its apply did.
type commitPulls interface {
	PullsForCommit(ctx context.Context, repo nestgh.Repo, sha string) ([]nestgh.PR, error)
}

// stickyWriter keeps a plan in the pull request's one sticky comment
// (nestgh.Client.UpsertSticky: edited in place, never posted anew).
type stickyWriter interface {
	UpsertSticky(ctx context.Context, repo nestgh.Repo, number int, marker string, parts []string) (nestgh.StickyResult, error)
}

// checkRunner writes the nest/plan and nest/drift check runs.
type checkRunner interface {
	CreateCheckRun(ctx context.Context, repo nestgh.Repo, cr nestgh.CheckRun) (int64, error)
}

// planReporter reports a plan on its pull request: the sticky comment and
// the check run.
type planReporter interface {
	stickyWriter
	checkRunner
}

// reactor acknowledges a /nest command with a reaction on its comment.
type reactor interface {
	React(ctx context.Context, repo nestgh.Repo, commentID int64, content string) error
}

// deployer reports an apply as a Deployment and its statuses.
type deployer interface {
	CreateDeployment(ctx context.Context, repo nestgh.Repo, ref, environment, description string) (int64, error)
	DeploymentStatus(ctx context.Context, repo nestgh.Repo, id int64, state, description, logURL string) error
}

// applyReporter reports an apply: its Deployment, and a comment on each
// pull request it applies (and on the one whose /nest apply finds the
// fleet locked).
type applyReporter interface {
	deployer
	commenter
}

// issueSyncer keeps the drift issue current.
type issueSyncer interface {
	SyncIssue(ctx context.Context, repo nestgh.Repo, marker, title, body string, open bool) (int, error)
}
