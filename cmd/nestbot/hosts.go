package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	"github.com/ducksnest/nestbot/store"
)

// repoFacts is what git says about the target: the commit, its tree (the
// directory holding nest.yaml within it), and the paths changed since each
// revision a host runs.
type repoFacts struct {
	repo     *git.Repo
	prefix   string // nest.yaml's directory relative to the repository root ("" at the root)
	revision string
}

// openRepo opens the git repository holding nest.yaml, at HEAD. It returns
// nil when nest.yaml is not in a git checkout: hosts are then not compared.
func openRepo(d desired) *repoFacts {
	root, err := filepath.Abs(d.Root)
	if err != nil {
		return nil
	}
	top := root
	for {
		if _, err := os.Stat(filepath.Join(top, ".git")); err == nil {
			break
		}
		parent := filepath.Dir(top)
		if parent == top {
			return nil
		}
		top = parent
	}
	repo, err := git.Open(top, git.Options{})
	if err != nil {
		return nil
	}
	head, err := repo.Head()
	if err != nil {
		return nil
	}
	prefix, _ := filepath.Rel(top, root)
	if prefix == "." {
		prefix = ""
	}
	return &repoFacts{repo: repo, prefix: filepath.ToSlash(prefix), revision: head}
}

// source is the tree at the target revision, from nest.yaml's directory down.
func (r *repoFacts) source() (fs.FS, error) {
	tree, err := r.repo.Tree(r.revision)
	if err != nil {
		return nil, err
	}
	if r.prefix == "" {
		return tree, nil
	}
	return fs.Sub(tree, r.prefix)
}

// changedSince lists, relative to nest.yaml's directory, the paths that
// differ between rev and the target; ok is false when rev is unknown here.
func (r *repoFacts) changedSince(rev string) ([]string, bool) {
	paths, err := r.repo.ChangedPaths(rev, r.revision)
	if err != nil {
		return nil, false
	}
	var out []string
	for _, p := range paths {
		if r.prefix == "" {
			out = append(out, p)
		} else if rel, ok := strings.CutPrefix(p, r.prefix+"/"); ok {
			out = append(out, rel)
		}
	}
	return out, true
}

// targets are the desired hosts as the rollout reaches them: by tailnet
// address, with their pinned host keys.
func targets(d desired, live *reconcile.Live) ([]rollout.Target, error) {
	addr := map[string]string{}
	for _, n := range live.Tailnet.Nodes {
		if len(n.IPs) > 0 {
			addr[n.Name] = n.IPs[0] + ":22"
		}
	}
	var out []rollout.Target
	for name := range d.Fleet.Hosts {
		t := rollout.Target{Name: name, Addr: addr[name]}
		if k := d.HostKeys[name]; k != "" {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				return nil, fmt.Errorf("pinned host key of %s: %w", name, err)
			}
			t.HostKey = pub
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// observeHosts probes, over the tailnet, every desired host that is on it:
// what it runs. A host that cannot be reached is recorded as such.
func observeHosts(ctx context.Context, bot *tsnet.Server, d desired, live *reconcile.Live) (map[string]reconcile.HostRun, map[string]error) {
	ts, err := targets(d, live)
	runs := map[string]reconcile.HostRun{}
	errs := map[string]error{}
	if err != nil {
		errs[""] = err
		return runs, errs
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, t := range ts {
		if t.Addr == "" {
			continue // not on the tailnet: the tailnet plane says so
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			p, err := rollout.Probe(pctx, bot, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				runs[t.Name] = reconcile.HostRun{Reachable: false}
				errs[t.Name] = err
				return
			}
			runs[t.Name] = p.HostRun()
		}()
	}
	wg.Wait()
	return runs, errs
}

// fillRepo sets the plan's git facts: the target revision and, for each
// revision a host runs, the paths changed since.
func fillRepo(r *repoFacts, live *reconcile.Live) {
	if r == nil {
		return
	}
	live.Repo.Revision = r.revision
	live.Repo.Changed = map[string][]string{}
	for _, run := range live.Hosts {
		if run.Revision == "" || run.Revision == r.revision {
			continue
		}
		if _, done := live.Repo.Changed[run.Revision]; done {
			continue
		}
		if paths, ok := r.changedSince(run.Revision); ok {
			live.Repo.Changed[run.Revision] = paths
		}
	}
}

// rolloutApplier rolls the plan's hosts: nixos-rebuild switch, in batches,
// with a dead-man rollback armed on each host first.
func rolloutApplier(s *session, d desired, r *repoFacts, stateDir string, io *IO, jsonEvents bool) reconcile.PlaneApplier {
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		res, err := runRollout(ctx, s, d, r, stateDir, io, jsonEvents, steps)
		out := make([]reconcile.StepResult, 0, len(steps))
		for _, st := range steps {
			name := strings.TrimPrefix(st.Address, reconcile.HostAddress(""))
			hr, ok := res.Host(name)
			switch {
			case !ok:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "not rolled"})
			case hr.State == rollout.StateConfirmed:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: "on " + shortRev(hr.Now.Revision)})
			case hr.State == rollout.StateSkipped:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: hr.Detail})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: fmt.Sprintf("%s: %s (now on %s)", hr.State, hr.Detail, shortRev(hr.Now.Revision))})
			}
		}
		return out, err
	}
}

func runRollout(ctx context.Context, s *session, d desired, r *repoFacts, stateDir string, io *IO, jsonEvents bool, steps []reconcile.Step) (*rollout.Result, error) {
	if s.Bot == nil || r == nil {
		return &rollout.Result{}, errors.New("rollout needs the tailnet and a git checkout")
	}
	batches, err := rollout.BatchesFromSteps(steps)
	if err != nil {
		return &rollout.Result{}, err
	}
	src, err := r.source()
	if err != nil {
		return &rollout.Result{}, err
	}
	ts, err := targets(d, s.Live)
	if err != nil {
		return &rollout.Result{}, err
	}
	db, err := store.Open(filepath.Join(stateDir, "nestbot.db"))
	if err != nil {
		return &rollout.Result{}, err
	}
	defer db.Close()
	ro := &rollout.Rollout{Dialer: s.Bot, Hosts: ts, Batches: batches, MaxParallel: d.Fleet.Rollout.MaxParallel,
		Source: src, FlakeDir: d.Fleet.Flake, Revision: r.revision, Health: d.Fleet.Rollout.Health,
		ConfirmWithin: d.Fleet.Rollout.ConfirmWithin.Duration, Journal: db.Journal(),
		Events: func(e rollout.Event) { printEvent(io, e, jsonEvents) }}
	res, err := ro.Run(ctx)
	if res == nil {
		res = &rollout.Result{}
	}
	return res, err
}

func printEvent(io *IO, e rollout.Event, jsonEvents bool) {
	if jsonEvents {
		fmt.Fprintln(io.Out, mustJSON(e))
		return
	}
	fmt.Fprintln(io.Err, e.String())
}

func shortRev(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	if rev == "" {
		return "(unknown)"
	}
	return rev
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("{%q:%q}", "error", err.Error())
	}
	return string(data)
}
