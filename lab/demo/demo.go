// Package demo plays nestbot's whole story in the lab, in one process: the
// DucksNest fleet in a lab GitHub repository, nestbot serve taking its
// webhook, and pull requests that add a host, change one, and break one —
// each planned on the pull request and applied on merge, with a plain
// narration of what happens. nestlab demo runs it; the end-to-end test
// plays the same steps and checks their effects in the lab.
package demo

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/ducksnest/nestbot/gitops/bot"
	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/gitops/git"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/gitops/webhook"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// Options shape a demo.
type Options struct {
	// Out receives the narration.
	Out io.Writer
	// Example is the fleet's repository to start from; default
	// examples/ducksnest of this source tree.
	Example string
	// Logger receives everything the lab and nestbot log; nil discards.
	Logger *slog.Logger
}

// Demo is a running demo: the lab, its GitHub, and nestbot serving it.
type Demo struct {
	Lab    *lab.Lab
	GitHub *lab.GitHub
	Repo   nestgh.Repo
	// Webhook is nestbot serve's webhook URL.
	Webhook string

	out     io.Writer
	dir     string
	db      *store.DB
	cancel  context.CancelFunc
	served  chan error
	mu      sync.Mutex
	events  []rollout.Event
	applied chan string // deployment outcomes, as the bot reports them
}

// exampleDir is examples/ducksnest of the source tree.
func exampleDir() string {
	return filepath.Join(fixtures.RepoRoot(), "examples", "ducksnest")
}

// Start starts the lab with the example repository and nestbot serving it.
// nestbot's age identity is added to pki.admins, so it can sign with the
// CAs it creates.
func Start(ctx context.Context, o Options) (*Demo, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Example == "" {
		o.Example = exampleDir()
	}
	dir, err := os.MkdirTemp("", "nestbot-demo-")
	if err != nil {
		return nil, err
	}
	d := &Demo{out: o.Out, dir: dir, applied: make(chan string, 16)}
	fail := func(err error) (*Demo, error) { d.Close(); return nil, err }
	repo := filepath.Join(dir, "repo")
	if err := os.CopyFS(repo, os.DirFS(o.Example)); err != nil {
		return fail(fmt.Errorf("demo: copy the example %s: %w", o.Example, err))
	}
	os.RemoveAll(filepath.Join(repo, "live")) // snapshots for offline plans; not part of the fleet's repository
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return fail(err)
	}
	file := filepath.Join(repo, "nest.yaml")
	yaml, err := os.ReadFile(file)
	if err != nil {
		return fail(err)
	}
	if yaml, err = nest.WithAdmin(yaml, id.Recipient().String(), "nestbot"); err != nil {
		return fail(fmt.Errorf("demo: make nestbot an admin of %s: %w", o.Example, err))
	}
	if err := os.WriteFile(file, yaml, 0o644); err != nil {
		return fail(err)
	}
	f, err := nest.Load(file)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	d.Webhook = "http://" + ln.Addr().String() + "/webhook"
	l, err := lab.Up(lab.Options{Fleet: f, PendingDelay: -1, Logger: o.Logger,
		GitHub: &lab.GitHubOptions{FromDir: repo, WebhookURL: d.Webhook}})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	d.Lab, d.GitHub = l, l.GitHub
	d.Repo = nestgh.Repo{Owner: d.GitHub.Owner, Name: d.GitHub.Repo}
	// nestbot reaches the lab exactly as it reaches the real services:
	// through the environment (the AWS SDK reads it from the process).
	for _, kv := range append(l.Env(), "NEST_AGE_IDENTITY="+id.String()) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	app := d.GitHub.App()
	gh, err := nestgh.New(nestgh.Options{BaseURL: d.GitHub.APIURL(), AppID: app.ID, PrivateKey: app.PrivateKeyPEM,
		Login: app.BotLogin, WriteSpacing: -1, Logger: o.Logger})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	state := filepath.Join(dir, "state")
	if d.db, err = store.Open(filepath.Join(state, "nestbot.db")); err != nil {
		ln.Close()
		return fail(err)
	}
	b, err := bot.New(bot.Config{GitHub: gh, WorkDir: filepath.Join(state, "work"),
		Fleet: fleet.Options{Getenv: os.Getenv, DB: d.db,
			Tailnet: fleet.TailnetOptions{StateDir: state, ControlURL: os.Getenv("NESTBOT_TS_CONTROL_URL")}},
		Locker: d.db.Locks(), Artifacts: d.db.Artifacts(), Logger: o.Logger,
		Events: d.event,
		Observe: func(kind, result string) {
			if kind == "apply" {
				d.applied <- result
			}
		}})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	srv, err := webhook.New(webhook.Config{Secrets: [][]byte{[]byte(d.GitHub.Secret)}, Queue: d.db.Queue(), Workers: 2, Run: b.Run, Logger: o.Logger})
	if err != nil {
		ln.Close()
		return fail(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.served = cancel, make(chan error, 1)
	go func() { d.served <- srv.Run(sctx, ln) }()
	return d, nil
}

// Close stops nestbot and the lab and removes what they wrote.
func (d *Demo) Close() {
	if d.cancel != nil {
		d.cancel()
		<-d.served
	}
	if d.db != nil {
		d.db.Close()
	}
	if d.Lab != nil {
		d.Lab.Close()
	}
	os.RemoveAll(d.dir)
}

func (d *Demo) event(e rollout.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
}

// takeEvents returns the rollout events since the last call.
func (d *Demo) takeEvents() []rollout.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.events
	d.events = nil
	return ev
}

func (d *Demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// Step is what one pull request came to.
type Step struct {
	Number     int
	Plan       string // the plan comment, as GitHub shows it (marker dropped)
	PlanTitle  string // the check run's title: the plan's summary
	Merge      string // the merge commit
	Deployment string // the deployment's last state: success or failure
	Detail     string // the deployment's description
	Rolled     []HostRoll
}

// HostRoll is one host's part in a rollout, from its events.
type HostRoll struct {
	Host, Final, Detail string
	Batch               int
}

// PullRequest opens a pull request from branch with files changed, waits
// (bounded by ctx) for its plan, merges it, and waits for the apply's
// deployment to finish.
func (d *Demo) PullRequest(ctx context.Context, branch, title string, files map[string]string) (*Step, error) {
	v, err := d.GitHub.OpenPRFrom(ctx, lab.PROpen{Branch: branch, Title: title, Files: files})
	if err != nil {
		return nil, err
	}
	st := &Step{Number: v.PR.Number}
	for {
		v, err = d.GitHub.View(st.Number)
		if err != nil {
			return st, err
		}
		if c := checkRun(v, bot.CheckPlan); c != nil && c.Status == "completed" {
			st.PlanTitle = c.Title
			for _, cm := range v.Comments {
				if strings.HasPrefix(cm.Body, "<!-- nestbot:plan ") {
					st.Plan += reconcile.StripMarker(cm.Body)
				}
			}
			break
		}
		if err := pause(ctx, "the plan of #"+fmt.Sprint(st.Number)); err != nil {
			return st, err
		}
	}
	return st, nil
}

// Merge merges the step's pull request and waits for its deployment.
func (d *Demo) Merge(ctx context.Context, st *Step) error {
	d.takeEvents()
	for len(d.applied) > 0 {
		<-d.applied
	}
	v, err := d.GitHub.MergePR(ctx, lab.PRAction{Number: st.Number})
	if err != nil {
		return err
	}
	st.Merge = v.PR.MergeCommitSHA
	select {
	case <-d.applied:
	case <-ctx.Done():
		return fmt.Errorf("demo: waiting for the apply of #%d: %w", st.Number, ctx.Err())
	}
	for {
		v, err = d.GitHub.View(st.Number)
		if err != nil {
			return err
		}
		if n := len(v.Deployments); n > 0 {
			dep := v.Deployments[n-1]
			if k := len(dep.Statuses); k > 0 && dep.Statuses[k-1].State != "in_progress" {
				st.Deployment, st.Detail = dep.Statuses[k-1].State, dep.Statuses[k-1].Description
				break
			}
		}
		if err := pause(ctx, "the deployment of #"+fmt.Sprint(st.Number)); err != nil {
			return err
		}
	}
	st.Rolled = rolls(d.takeEvents())
	return nil
}

// rolls folds rollout events into each host's part, in the order hosts started.
func rolls(events []rollout.Event) []HostRoll {
	var out []HostRoll
	idx := map[string]int{}
	for _, e := range events {
		i, ok := idx[e.Host]
		if !ok {
			i = len(out)
			idx[e.Host] = i
			out = append(out, HostRoll{Host: e.Host, Batch: e.Batch})
		}
		out[i].Final = string(e.State)
		if e.Detail != "" {
			out[i].Detail = e.Detail
		}
	}
	return out
}

func checkRun(v lab.PRView, name string) *struct{ Status, Title string } {
	for _, c := range v.Checks {
		if c.Name == name {
			return &struct{ Status, Title string }{c.Status, c.Title}
		}
	}
	return nil
}

// pause waits a moment before looking again, or fails when ctx is done.
func pause(ctx context.Context, what string) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("demo: waiting for %s: %w", what, ctx.Err())
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

// HostRow is one row of the final table.
type HostRow struct {
	Host, Revision string
	Generation     int
	CertsExpire    time.Time // the earliest expiry of the host's certificates
}

// Hosts is every host of the fleet as the lab sees it now.
func (d *Demo) Hosts() ([]HostRow, error) {
	tree, err := d.mainTree()
	if err != nil {
		return nil, err
	}
	var rows []HostRow
	for _, name := range d.Lab.HostNames() {
		h, _ := d.Lab.Host(name)
		st, err := h.State()
		if err != nil {
			return nil, err
		}
		row := HostRow{Host: name, Revision: cmp.Or(st.Deployed, st.Revision), Generation: st.Generation}
		row.CertsExpire = certsExpire(tree, name)
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Host < rows[j].Host })
	return rows, nil
}

// mainTree is the repository's default branch, as files.
func (d *Demo) mainTree() (fs.FS, error) {
	dir, err := d.GitHub.GitDir(d.Repo.Owner, d.Repo.Name)
	if err != nil {
		return nil, err
	}
	r, err := git.Open(dir, git.Options{})
	if err != nil {
		return nil, err
	}
	return r.Tree("main")
}

// certsExpire is the earliest expiry among host's certificates in tree.
func certsExpire(tree fs.FS, host string) time.Time {
	var first time.Time
	dir := path.Join(certsDir, "derived", host)
	ents, _ := fs.ReadDir(tree, dir)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		data, err := fs.ReadFile(tree, path.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil && (first.IsZero() || c.NotAfter.Before(first)) {
				first = c.NotAfter
			}
		}
	}
	return first
}

// certsDir is the example's pki.dir.
const certsDir = "infra/nix/secrets/certs"
