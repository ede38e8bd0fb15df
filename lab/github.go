package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/ducksnest/nestbot/internal/fixtures"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// GitHubOptions start the lab's GitHub with one infrastructure repository.
type GitHubOptions struct {
	// Owner and Repo name the repository; default ducksnest/infra.
	Owner, Repo string
	// FromDir seeds the repository's first commit (nest.yaml and the rest).
	FromDir string
	// WebhookURL receives the repository's events (nestbot serve's
	// /webhook); empty: events are built but not sent.
	WebhookURL string
	// Examples is the directory of npm @octokit/webhooks-examples; default
	// where .ci/fixtures installs it.
	Examples string
}

// GitHub is the lab's GitHub, the infrastructure repository in it, and a
// webhook sender that tells nestbot what happens there, as GitHub does.
type GitHub struct {
	*labgithub.Server
	Owner, Repo string
	Secret      string // the webhook secret
	KeyFile     string // the App's private key, as a PEM file

	mu      sync.Mutex
	sender  *labgithub.Sender
	logf    func(string, ...any)
	control *http.Server
}

// startGitHub starts the lab's GitHub with the repository.
func (l *Lab) startGitHub(o *GitHubOptions) error {
	g := &GitHub{Owner: o.Owner, Repo: o.Repo, logf: l.logf}
	if g.Owner == "" {
		g.Owner = "ducksnest"
	}
	if g.Repo == "" {
		g.Repo = "infra"
	}
	examples := o.Examples
	if examples == "" {
		examples = os.Getenv("NESTBOT_WEBHOOK_EXAMPLES")
	}
	if examples == "" {
		examples = filepath.Join(fixtures.NodeModules(), "@octokit", "webhooks-examples")
	}
	srv, err := labgithub.New(labgithub.Config{Dir: filepath.Join(l.dir, "github"), Logger: l.logger, WebhookExamples: examples,
		OnPush: g.pushed})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	g.Server = srv
	var b [16]byte
	rand.Read(b[:])
	g.Secret = hex.EncodeToString(b[:])
	g.KeyFile = filepath.Join(l.dir, "github-app.pem")
	if err := os.WriteFile(g.KeyFile, srv.App().PrivateKeyPEM, 0o600); err != nil {
		srv.Close()
		return err
	}
	if o.WebhookURL != "" {
		g.SetWebhookURL(o.WebhookURL)
	}
	if err := srv.CreateRepo(context.Background(), g.Owner, g.Repo, labgithub.RepoOptions{FromDir: o.FromDir, Message: "the fleet"}); err != nil {
		srv.Close()
		return fmt.Errorf("lab: create %s/%s: %w", g.Owner, g.Repo, err)
	}
	l.GitHub = g
	return nil
}

// SetWebhookURL points the repository's webhook at url.
func (g *GitHub) SetWebhookURL(url string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sender = &labgithub.Sender{URL: url, Secret: []byte(g.Secret), InstallationTargetID: g.App().ID}
}

// Send delivers ev to the webhook, signed; without a webhook URL it does
// nothing and says so.
func (g *GitHub) Send(ctx context.Context, ev labgithub.Event) (labgithub.Delivery, error) {
	g.mu.Lock()
	s := g.sender
	g.mu.Unlock()
	if s == nil {
		return labgithub.Delivery{}, fmt.Errorf("lab: no webhook URL to send %s to", ev.Name)
	}
	d, err := s.Send(ctx, ev)
	if err == nil {
		g.logf("github: delivered %s %s: %d", ev.Name, d.ID, d.Status)
	}
	return d, err
}

// pushed tells the webhook about a push over git (nestbot's certificate
// commits, a person's git push): a push event, and a pull_request
// synchronize for each open pull request whose head moved.
func (g *GitHub) pushed(p labgithub.Pushed) {
	g.mu.Lock()
	has := g.sender != nil
	g.mu.Unlock()
	if !has {
		return
	}
	go func() {
		ctx := context.Background()
		if ev, err := g.PushEvent(p); err == nil {
			g.Send(ctx, ev)
		}
		for n := 1; ; n++ {
			pr, err := g.PullRequest(p.Owner, p.Repo, n)
			if err != nil {
				return
			}
			if pr.State == "open" && "refs/heads/"+pr.HeadRef == p.Ref && !pr.Fork {
				if ev, err := g.PullRequestEvent(p.Owner, p.Repo, n, "synchronize"); err == nil {
					g.Send(ctx, ev)
				}
			}
		}
	}()
}

// Env is what points nestbot serve, action and drift at the lab's GitHub,
// as its App.
func (g *GitHub) Env() []string {
	app := g.App()
	return append(g.Server.Env(),
		"GITHUB_REPOSITORY="+g.Owner+"/"+g.Repo,
		"NESTBOT_GITHUB_APP_ID="+strconv.FormatInt(app.ID, 10),
		"NESTBOT_GITHUB_APP_KEY_FILE="+g.KeyFile,
		"NESTBOT_GITHUB_LOGIN="+app.BotLogin,
		"NESTBOT_WEBHOOK_SECRET="+g.Secret,
	)
}
