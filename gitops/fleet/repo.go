package fleet

import (
	"context"
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
)

// Repo is what git says about the target: the commit, its tree (the
// directory holding nest.yaml within it), and the paths changed since each
// revision a host runs.
type Repo struct {
	git      *git.Repo
	prefix   string // nest.yaml's directory relative to the repository root ("" at the root)
	revision string
}

// OpenRepo opens the git repository holding dir, at HEAD. It returns nil
// when dir is not in a git checkout: hosts are then not compared.
func OpenRepo(dir string) *Repo {
	root, err := filepath.Abs(dir)
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
	return &Repo{git: repo, prefix: filepath.ToSlash(prefix), revision: head}
}

// Revision is the commit hosts roll to.
func (r *Repo) Revision() string { return r.revision }

// Git is the repository.
func (r *Repo) Git() *git.Repo { return r.git }

// Source is the tree at the target revision, from nest.yaml's directory down.
func (r *Repo) Source() (fs.FS, error) {
	tree, err := r.git.Tree(r.revision)
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
func (r *Repo) changedSince(rev string) ([]string, bool) {
	paths, err := r.git.ChangedPaths(rev, r.revision)
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

// fill sets the plan's git facts: the target revision and, for each
// revision a host runs, the paths changed since.
func (r *Repo) fill(live *reconcile.Live) {
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

// Targets are the desired hosts as the rollout reaches them: by tailnet
// address, with their pinned host keys.
func Targets(d *Desired, live *reconcile.Live) ([]rollout.Target, error) {
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
func observeHosts(ctx context.Context, bot *tsnet.Server, d *Desired, live *reconcile.Live) (map[string]reconcile.HostRun, map[string]error) {
	ts, err := Targets(d, live)
	runs := map[string]reconcile.HostRun{}
	errs := map[string]error{}
	if err != nil {
		errs[""] = err
		return runs, errs
	}
	var reachable []rollout.Target
	for _, t := range ts {
		if t.Addr != "" { // not on the tailnet: the tailnet plane says so
			reachable = append(reachable, t)
		}
	}
	probed, perrs := probeAll(ctx, bot, reachable)
	for i, t := range reachable {
		if perrs[i] != nil {
			runs[t.Name] = reconcile.HostRun{Reachable: false}
			errs[t.Name] = perrs[i]
			continue
		}
		runs[t.Name] = probed[i].HostRun()
	}
	return runs, errs
}

// probeAll probes targets over the tailnet, 16 at a time, each within 20 s.
// The results and errors are in the order of targets.
func probeAll(ctx context.Context, bot rollout.Dialer, targets []rollout.Target) ([]rollout.Probed, []error) {
	probed, errs := make([]rollout.Probed, len(targets)), make([]error, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, t := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			probed[i], errs[i] = rollout.Probe(pctx, bot, t)
		})
	}
	wg.Wait()
	return probed, errs
}
