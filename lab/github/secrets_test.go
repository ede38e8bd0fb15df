package github_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// TestSecretsStayOut: tokens, the App's key and a webhook secret reach no
// log line, violation or error body, whatever the requests do.
func TestSecretsStayOut(t *testing.T) {
	examples := fixtures.Package(t, "@octokit/webhooks-examples")
	e := setup(t, func(c *labgithub.Config) { c.WebhookExamples = examples })
	person := e.srv.Token("alice")
	bogus := "ghs_canaryCANARYcanary0123456789abcdef"
	app := e.srv.App()

	// Good and bad tokens, an invalid body, an unknown route, git.
	e.gh.Repositories.Get(e.ctx, owner, repo)
	_, _, errBogus := client(t, e.srv, bogus).Repositories.Get(e.ctx, owner, repo)
	client(t, e.srv, person).Checks.CreateCheckRun(e.ctx, owner, repo, github.CreateCheckRunOptions{Name: "x", HeadSHA: "nope"})
	e.gh.PullRequests.List(e.ctx, owner, repo, nil)
	atr, _ := ghinstallation.New(http.DefaultTransport, app.ID, app.InstallationID, app.PrivateKeyPEM)
	atr.BaseURL = e.srv.APIURL()
	minted, _ := atr.Token(e.ctx)
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, e.srv.CloneURL(owner, repo)+"/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("x-access-token", bogus)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	ev, err := e.srv.PushEvent(labgithub.Pushed{Owner: owner, Repo: repo, Ref: "refs/heads/main", Before: strings.Repeat("0", 40), After: mustBranch(t, e.srv, "main"), Pusher: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	secret := "canary-hook-secret-91d2"
	ts, _ := receiver(t)
	(&labgithub.Sender{URL: ts.URL, Secret: []byte(secret)}).Send(e.ctx, ev)

	seen := e.logs.String() + "\n" + strings.Join(e.srv.Violations(), "\n")
	if errBogus != nil {
		seen += "\n" + errBogus.Error()
	}
	keyBody := strings.Split(string(app.PrivateKeyPEM), "\n")[1]
	for name, secret := range map[string]string{"installation token": e.tok, "personal token": person, "refused token": bogus,
		"minted token": minted, "App key": keyBody, "webhook secret": secret} {
		if secret == "" {
			t.Errorf("%s: empty canary", name)
			continue
		}
		if strings.Contains(seen, secret) {
			t.Errorf("the %s reached a log line, violation or error", name)
		}
	}
	if strings.Contains(string(ev.Payload), secret) {
		t.Error("the webhook secret is in the payload")
	}
}

func mustBranch(t *testing.T, srv *labgithub.Server, b string) string {
	t.Helper()
	sha, err := srv.Branch(owner, repo, b)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}
