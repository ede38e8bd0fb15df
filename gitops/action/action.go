// Package action runs nestbot inside a GitHub Actions job, as the composite
// action's step does: it reads the event the workflow runs for from
// GITHUB_EVENT_NAME and GITHUB_EVENT_PATH, runs the same handlers as the
// server, inline — pull_request: the plan comment and check run;
// issue_comment: /nest commands; push to the default branch: the apply;
// schedule: the drift check; workflow_dispatch: the command chosen — and
// reports to the workflow: the plan in GITHUB_STEP_SUMMARY, outputs in
// GITHUB_OUTPUT, nest.yaml's mistakes as ::error annotations, a ::group::
// per host during a rollout.
package action

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"unicode"

	"github.com/ducksnest/nestbot/gitops/bot"
	"github.com/ducksnest/nestbot/gitops/fleet"
	nestgh "github.com/ducksnest/nestbot/gitops/github"
	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// Result is the action's outcome, as its `result` output says it.
const (
	ResultNoChanges = "no-changes"
	ResultChanges   = "changes"
	ResultInvalid   = "invalid"
	ResultApplied   = "applied"
	ResultSkipped   = "skipped"
	ResultFailure   = "failure"
	ResultDone      = "done" // a command that neither plans nor applies (help, unlock)
)

// Config is what a run needs besides the environment.
type Config struct {
	// Getenv reads the workflow's environment (GITHUB_*, inputs).
	Getenv func(string) string
	// Out is the job's log: workflow commands (::error, ::group::) go here.
	Out io.Writer
	// NewBot makes the bot from its configuration, with Events wired to
	// the log's host groups.
	Bot bot.Config
	// Command is workflow_dispatch's chosen command (plan, apply, drift);
	// default: the event decides.
	Command string
}

// Outcome is what one run did.
type Outcome struct {
	Event   string
	Result  string
	Changes bool
	Plan    *reconcile.Plan
}

// Run handles the workflow's event, writes the summary and outputs, and
// returns an error when the job should fail.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	env := cfg.Getenv
	if env == nil {
		env = os.Getenv
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	event := env("GITHUB_EVENT_NAME")
	if event == "" {
		return nil, errors.New("GITHUB_EVENT_NAME is not set: nestbot action runs inside a GitHub Actions job (use nestbot plan or apply elsewhere)")
	}
	path := env("GITHUB_EVENT_PATH")
	payload, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("GITHUB_EVENT_PATH: %w", err)
	}
	repo, err := nestgh.ParseRepo(env("GITHUB_REPOSITORY"))
	if err != nil {
		return nil, fmt.Errorf("GITHUB_REPOSITORY: %w", err)
	}
	log := &workflowLog{out: cfg.Out}
	cfg.Out = log
	groups := &hostGroups{out: log}
	bcfg := cfg.Bot
	bcfg.Events = groups.event
	if bcfg.Logger != nil {
		// The run is the Action's delivery: its records say which.
		bcfg.Logger = inertLogger(bcfg.Logger).With("run", env("GITHUB_RUN_ID"), "event", event) // its records quote errors, which may quote a host
	}
	bcfg.Mask, bcfg.Fleet.Mask = log.mask, log.mask
	b, err := bot.New(bcfg)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, log: log, env: env, bot: b, gh: bcfg.GitHub, repo: repo, payload: payload, out: &Outcome{Event: event}}
	var runErr error
	switch cmd := cmp.Or(cfg.Command, env("INPUT_COMMAND")); {
	case event == "pull_request" || event == "pull_request_target":
		runErr = r.pullRequest(ctx)
	case event == "issue_comment":
		runErr = r.comment(ctx)
	case event == "push":
		runErr = r.push(ctx)
	case event == "schedule" || (event == "workflow_dispatch" && (cmd == "" || cmd == "drift")):
		runErr = r.drift(ctx)
	case event == "workflow_dispatch" && cmd == "apply":
		runErr = r.applyDefault(ctx)
	case event == "workflow_dispatch" && cmd == "plan":
		runErr = r.drift(ctx) // a plan of the default branch is a drift check
	case event == "workflow_dispatch":
		runErr = fmt.Errorf("command %q: use plan, apply or drift", cmd)
	default:
		r.out.Result = ResultSkipped
		log.say("nestbot: %s events are not handled; nothing to do", event)
	}
	groups.close()
	if runErr != nil && r.out.Result == "" {
		r.out.Result = ResultFailure
	}
	if err := r.writeOutputs(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return r.out, r.fail(runErr)
}

// fail reports the error a run ends with as an annotation and returns it
// inert: the caller prints it to the job's log as it is (nestbot action
// does, on exit), and it may quote a host's output.
func (r *run) fail(err error) error {
	if err == nil {
		return nil
	}
	fmt.Fprintf(r.log, "::error title=nestbot::%s\n", escapeData(oneLine(err.Error())))
	return inertError{err}
}

// inertError is an error whose text is inert (see inert) in an Actions
// log, however its cause reads.
type inertError struct{ err error }

func (e inertError) Error() string { return inert(e.err.Error()) }
func (e inertError) Unwrap() error { return e.err }

type run struct {
	cfg     Config
	log     *workflowLog
	env     func(string) string
	bot     *bot.Bot
	gh      bot.GitHub
	repo    nestgh.Repo
	payload []byte
	out     *Outcome
	summary strings.Builder
}

type eventPayload struct {
	Number      int `json:"number"`
	PullRequest struct {
		Number int  `json:"number"`
		Draft  bool `json:"draft"`
	} `json:"pull_request"`
	Repository struct {
		CloneURL      string `json:"clone_url"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	Ref    string `json:"ref"`
	After  string `json:"after"`
	Pusher struct {
		Name string `json:"name"`
	} `json:"pusher"`
	HeadCommit struct {
		Author struct {
			Email string `json:"email"`
		} `json:"author"`
	} `json:"head_commit"`
	Action string `json:"action"`
}

func (r *run) event() (eventPayload, error) {
	var p eventPayload
	if err := json.Unmarshal(r.payload, &p); err != nil {
		return p, fmt.Errorf("the event payload (GITHUB_EVENT_PATH) is not JSON: %w", err)
	}
	if p.Repository.CloneURL == "" {
		p.Repository.CloneURL = strings.TrimRight(cmp.Or(r.env("GITHUB_SERVER_URL"), "https://github.com"), "/") + "/" + r.repo.FullName() + ".git"
	}
	return p, nil
}

func (r *run) pullRequest(ctx context.Context) error {
	p, err := r.event()
	if err != nil {
		return err
	}
	number := cmp.Or(p.PullRequest.Number, p.Number)
	switch p.Action {
	case "opened", "synchronize", "reopened", "ready_for_review", "":
	default:
		r.out.Result = ResultSkipped
		r.log.say("nestbot: pull_request %s: nothing to plan", p.Action)
		return nil
	}
	res, err := r.bot.PlanPR(ctx, r.gh, bot.PlanRequest{Repo: r.repo, CloneURL: p.Repository.CloneURL, Number: number, Draft: p.PullRequest.Draft})
	if res != nil {
		r.reportPlan(res.Plan, res.Parts, res.Invalid, res.Skipped)
	}
	return err
}

// reportPlan writes a plan's summary, annotations and result.
func (r *run) reportPlan(plan *reconcile.Plan, parts []string, invalid nest.Errors, skipped string) {
	switch {
	case invalid != nil:
		r.out.Result = ResultInvalid
		file := cmp.Or(r.cfg.Bot.File, "nest.yaml")
		for _, e := range invalid {
			fmt.Fprintf(r.cfg.Out, "::error file=%s,line=%d,col=%d,title=%s::%s\n", escapeProperty(file), max(e.Pos.Line, 1), max(e.Pos.Col, 1),
				escapeProperty(cmp.Or(e.Path, file)), escapeData(strings.TrimSpace(e.Msg+"\n"+e.Hint)))
		}
	case skipped != "":
		r.out.Result = ResultSkipped
		r.log.say("nestbot: not planned: %s", skipped)
	case plan != nil:
		r.out.Plan, r.out.Changes = plan, plan.HasChanges()
		r.out.Result = ResultNoChanges
		if plan.HasChanges() {
			r.out.Result = ResultChanges
		}
		r.log.say("nestbot: %s", plan.Summary())
	}
	for _, p := range parts {
		r.summary.WriteString(reconcile.StripMarker(p))
		r.summary.WriteString("\n")
	}
}

func (r *run) comment(ctx context.Context) error {
	res, err := r.bot.OnComment(ctx, r.payload)
	if res != nil {
		r.reportPlan(res.Plan, res.Parts, res.Invalid, res.Skipped)
	}
	if r.out.Result == "" {
		r.out.Result = ResultDone
	}
	return err
}

func (r *run) push(ctx context.Context) error {
	p, err := r.event()
	if err != nil {
		return err
	}
	return r.apply(ctx, bot.Push{CloneURL: p.Repository.CloneURL, Ref: p.Ref, DefaultBranch: p.Repository.DefaultBranch, SHA: p.After, Pusher: p.Pusher.Name},
		p.HeadCommit.Author.Email)
}

// applyDefault is workflow_dispatch's apply: the default branch at the
// workflow's commit.
func (r *run) applyDefault(ctx context.Context) error {
	p, err := r.event()
	if err != nil {
		return err
	}
	// The default branch as the event says it, never the workflow's ref: a
	// dispatch on another branch applies nothing.
	return r.apply(ctx, bot.Push{CloneURL: p.Repository.CloneURL, Ref: r.env("GITHUB_REF"), DefaultBranch: p.Repository.DefaultBranch,
		SHA: r.env("GITHUB_SHA"), Pusher: r.env("GITHUB_ACTOR")}, "")
}

// apply applies push (of r.repo) unless its head commit's author is
// nestbot (authorEmail).
func (r *run) apply(ctx context.Context, push bot.Push, authorEmail string) error {
	push.Repo = r.repo
	if authorEmail != "" && strings.EqualFold(authorEmail, r.bot.CommitEmail()) {
		r.out.Result = ResultSkipped
		r.log.say("nestbot: %s is nestbot's own commit; nothing to apply", fleet.ShortRev(push.SHA))
		return nil
	}
	res, err := r.bot.ApplyPush(ctx, r.gh, push)
	switch {
	case res == nil:
	case res.Skipped != "":
		r.out.Result = ResultSkipped
		r.log.say("nestbot: not applied: %s", res.Skipped)
	default:
		r.out.Plan = res.Plan
		r.out.Changes = res.Plan != nil && res.Plan.HasChanges()
		r.out.Result = ResultApplied
		r.summary.WriteString(res.Summary)
	}
	return err
}

func (r *run) drift(ctx context.Context) error {
	p, err := r.event()
	if err != nil {
		return err
	}
	branch := cmp.Or(p.Repository.DefaultBranch, strings.TrimPrefix(r.env("GITHUB_REF"), "refs/heads/"))
	res, err := r.bot.Drift(ctx, r.gh, bot.DriftRequest{Repo: r.repo, CloneURL: p.Repository.CloneURL, Branch: branch})
	if res != nil && res.Plan != nil {
		r.reportPlan(res.Plan, reconcile.RenderMarkdown(res.Plan), nil, "")
	}
	return err
}

// writeOutputs appends the step summary and the outputs: changes, result,
// plan-json.
func (r *run) writeOutputs() error {
	var errs []error
	if f := r.env("GITHUB_STEP_SUMMARY"); f != "" && r.summary.Len() > 0 {
		errs = append(errs, appendFile(f, r.summary.String()))
	}
	if f := r.env("GITHUB_OUTPUT"); f != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "changes=%t\nresult=%s\n", r.out.Changes, r.out.Result)
		if r.out.Plan != nil {
			var js strings.Builder
			if err := reconcile.RenderJSON(&js, r.out.Plan); err == nil {
				delim := "NESTBOT_" + randomID()
				fmt.Fprintf(&b, "plan-json<<%s\n%s\n%s\n", delim, strings.TrimRight(js.String(), "\n"), delim)
			}
		}
		errs = append(errs, appendFile(f, b.String()))
	}
	return errors.Join(errs...)
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hostGroups prints the rollout's progress as one ::group:: per host: a
// host's lines are held until it is done (confirmed, rolled back, failed
// or skipped), so hosts switching side by side do not interleave.
type hostGroups struct {
	mu      sync.Mutex
	out     io.Writer
	pending map[string][]string
	order   []string
}

func (g *hostGroups) event(e rollout.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[string][]string{}
	}
	if _, ok := g.pending[e.Host]; !ok {
		g.order = append(g.order, e.Host)
	}
	g.pending[e.Host] = append(g.pending[e.Host], e.String())
	switch e.State {
	case rollout.StateConfirmed, rollout.StateRolledBack, rollout.StateSkipped:
		g.flushLocked(e.Host, string(e.State))
	}
}

func (g *hostGroups) flushLocked(host, state string) {
	lines, ok := g.pending[host]
	if !ok {
		return
	}
	fmt.Fprintf(g.out, "::group::host %s: %s\n", escapeData(inert(host)), escapeData(state))
	for _, l := range lines {
		fmt.Fprintln(g.out, inert(l)) // a host's output: no command in it runs
	}
	fmt.Fprintln(g.out, "::endgroup::")
	delete(g.pending, host)
}

// close prints the hosts still open (a failure without a rollback).
func (g *hostGroups) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, h := range g.order {
		g.flushLocked(h, "stopped")
	}
	g.order = nil
}

// inert makes untrusted text — a host's output, an error that quotes it,
// anything from a pull request — safe to print in an Actions log: the runner
// carries out no workflow command in it. The runner (actions/runner,
// src/Runner.Common/ActionCommand.cs) reads a line as a command when, once
// leading white space is trimmed, it begins with "::", or when it holds
// "##[" anywhere; and it ends lines at "\n", "\r" or "\r\n". So each line
// that would begin with ":" gets "| " in front, "##[" becomes "# #[", and
// other control characters become U+FFFD. The text stays readable.
func inert(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) == 0 {
		return ""
	}
	for i, l := range lines {
		l = strings.Map(func(r rune) rune {
			if r != '\t' && (r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029) {
				return '\uFFFD'
			}
			return r
		}, l)
		l = strings.ReplaceAll(l, "##[", "# #[")
		if strings.HasPrefix(strings.TrimLeftFunc(l, unicode.IsSpace), ":") {
			l = "| " + l
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// inertLogger wraps l so that every record it logs is inert: its message
// and each string, error and value in it.
func inertLogger(l *slog.Logger) *slog.Logger {
	return slog.New(logs.MapStrings(l.Handler(), inert))
}

// workflowLog is the job's log, written line by line under one lock:
// nestbot's own workflow commands, and text made inert.
type workflowLog struct {
	mu  sync.Mutex
	out io.Writer
}

func (l *workflowLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.Write(p)
}

// say prints a line of text, inert.
func (l *workflowLog) say(format string, args ...any) {
	fmt.Fprintln(l, inert(fmt.Sprintf(format, args...)))
}

// mask tells the runner to mask secret (each of its lines) in the rest of
// the log: a token or key nestbot came by while it runs (an installation
// token, a minted auth key, a secret read from a file), which the runner
// does not know to mask as it masks the workflow's own secrets.
func (l *workflowLog) mask(secret string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.SplitSeq(strings.ReplaceAll(secret, "\r", "\n"), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Fprintf(l.out, "::add-mask::%s\n", escapeData(line))
		}
	}
}

// escapeData and escapeProperty escape workflow command values as the
// Actions toolkit does.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
