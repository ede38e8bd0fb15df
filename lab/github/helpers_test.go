package github_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/internal/logs/logstest"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

const (
	owner = "ducksnest"
	repo  = "infra"
)

type env struct {
	srv  *labgithub.Server
	gh   *github.Client // as the App's installation (nestbot[bot])
	tok  string
	logs *logstest.Log // every line the server logged, for tests that check no secret reached it
	ctx  context.Context
}

var initialFiles = map[string][]byte{
	"nest.yaml":           []byte("version: 1\nname: ducksnest\n"),
	"infra/nix/flake.nix": []byte("{ outputs = _: { }; }\n"),
	"README.md":           []byte("# infra\n"),
}

// setup starts a server holding ducksnest/infra (three files on main) and
// a go-github client authenticated as the App's installation.
func setup(t *testing.T, configure ...func(*labgithub.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	logger, l := logstest.New(t)
	cfg := labgithub.Config{Logger: logger}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := labgithub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.CreateRepo(ctx, owner, repo, labgithub.RepoOptions{Files: initialFiles}); err != nil {
		t.Fatal(err)
	}
	tok := srv.InstallationToken()
	return &env{srv: srv, gh: client(t, srv, tok), tok: tok, logs: l, ctx: ctx}
}

func client(t *testing.T, srv *labgithub.Server, tok string) *github.Client {
	t.Helper()
	gh, err := github.NewClient(github.WithAuthToken(tok), github.WithEnterpriseURLs(srv.URL(), srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return gh
}

func noViolations(t *testing.T, srv *labgithub.Server) {
	t.Helper()
	for _, v := range srv.Violations() {
		t.Errorf("violation: %s", v)
	}
}

// pushBranch commits files onto a new branch from main.
func (e *env) pushBranch(t *testing.T, branch string, files map[string][]byte) labgithub.Pushed {
	t.Helper()
	p, err := e.srv.Commit(e.ctx, owner, repo, labgithub.Commit{Branch: branch, Message: "change " + branch, Files: files, Author: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
