package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/nest"
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

// flakeDir is the flake's directory relative to the repository root (flake
// is relative to nest.yaml's directory).
func (r *Repo) flakeDir(flake string) string {
	if r.prefix == "" {
		return path.Clean(flake)
	}
	return path.Join(r.prefix, flake)
}

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

// evalTimeout bounds evaluating every host's toplevel.
const evalTimeout = 5 * time.Minute

// evalToplevels evaluates, with nix where nestbot runs, the toplevel each
// host's configuration builds at the target, so that the plan compares it
// with what the host runs. Without nix, or when the evaluation fails (the
// plan says why), hosts are compared by path rules.
func (r *Repo) evalToplevels(ctx context.Context, d *Desired, nix *rollout.LocalNix, live *reconcile.Live) {
	if r == nil {
		return
	}
	if nix == nil {
		live.Repo.EvalError = "nix is not installed where nestbot runs"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	co, err := nix.Checkout(ctx, r.git, r.revision, r.flakeDir(d.Fleet.Flake))
	if err != nil {
		live.Repo.EvalError = err.Error()
		return
	}
	defer co.Close()
	var attrs []string
	for _, name := range d.HostNames() {
		attrs = append(attrs, d.Fleet.Hosts[name].FlakeAttr())
	}
	tops, err := nix.EvalToplevels(ctx, co, attrs)
	if err != nil {
		live.Repo.EvalError = err.Error()
		return
	}
	live.Repo.Toplevels = map[string]string{}
	for _, name := range d.HostNames() {
		if t := tops[d.Fleet.Hosts[name].FlakeAttr()]; t != "" {
			live.Repo.Toplevels[name] = t
		}
	}
}

// Targets are the desired hosts as the rollout reaches them: by the
// tailnet address of their node (hosts.<name>.tailnet_name), with their
// flake attributes, pinned host keys and logins. getenv and secretsDir
// resolve rollout.ssh.key, nestbot's own key, for hosts that log in over
// OpenSSH (nest.SecretRef.Resolve).
func Targets(d *Desired, live *reconcile.Live, getenv func(string) string, secretsDir string) ([]rollout.Target, error) {
	addr := map[string]string{}
	for _, n := range live.Tailnet.Nodes {
		if len(n.IPs) > 0 {
			addr[n.Name] = n.IPs[0] + ":22"
		}
	}
	var key ssh.Signer
	var out []rollout.Target
	for _, name := range d.HostNames() {
		h := d.Fleet.Hosts[name]
		l := d.Fleet.Login(h)
		t := rollout.Target{Name: name, Attr: h.FlakeAttr(), Addr: addr[h.TailnetNode()],
			Login: rollout.Login{Via: l.Via, User: l.User}}
		if l.Via == nest.SSHViaOpenSSH {
			if key == nil {
				var err error
				if key, err = deployKey(d.Fleet, getenv, secretsDir); err != nil {
					return nil, err
				}
			}
			t.Login.Key = key
		}
		if k := d.Pins[name]; k != "" {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
			if err != nil {
				return nil, fmt.Errorf("pinned host key of %s: %w", name, err)
			}
			t.HostKey = pub
		}
		out = append(out, t)
	}
	return out, nil
}

// deployKey reads nestbot's own SSH key from rollout.ssh.key. Its errors
// say where the key was looked for, never what it holds.
func deployKey(f *nest.Fleet, getenv func(string) string, secretsDir string) (ssh.Signer, error) {
	ref := f.Rollout.SSH.Key
	if ref == nil {
		return nil, errors.New("rollout.ssh.key: a host logs in over openssh, and nest.yaml names no key for nestbot")
	}
	pem, err := ref.Resolve(getenv, secretsDir)
	if err != nil {
		return nil, fmt.Errorf("rollout.ssh.key: %w", err)
	}
	key, err := ssh.ParsePrivateKey([]byte(pem))
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("rollout.ssh.key (%s): the key has a passphrase; give nestbot a key without one", ref)
		}
		return nil, fmt.Errorf("rollout.ssh.key (%s): not an SSH private key (OpenSSH or PEM format, e.g. from ssh-keygen -t ed25519)", ref)
	}
	return key, nil
}

// DeployPublicKey is nestbot's SSH public key (authorized_keys format), for
// the deploy user's authorized_keys; "" when no host logs in over OpenSSH.
func DeployPublicKey(f *nest.Fleet, getenv func(string) string, secretsDir string) (string, error) {
	if f.Rollout.SSH.Key == nil {
		return "", nil
	}
	key, err := deployKey(f, getenv, secretsDir)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key.PublicKey()))) + " nestbot", nil
}

// observeHosts probes, over the tailnet, every desired host that is on it:
// what it runs. A host that cannot be reached is recorded as such.
func observeHosts(ctx context.Context, bot *tsnet.Server, d *Desired, live *reconcile.Live, getenv func(string) string, secretsDir string, probeTimeout time.Duration) (map[string]reconcile.HostRun, map[string]error) {
	ts, err := Targets(d, live, getenv, secretsDir)
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
	probed, perrs := probeAll(ctx, bot, reachable, probeTimeout)
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

// DefaultProbeTimeout bounds each host's probe unless Options.ProbeTimeout
// says otherwise.
const DefaultProbeTimeout = 20 * time.Second

// probeAll probes targets over the tailnet, 16 at a time, each within
// timeout (0: DefaultProbeTimeout). The results and errors are in the order
// of targets.
func probeAll(ctx context.Context, bot rollout.Dialer, targets []rollout.Target, timeout time.Duration) ([]rollout.Probed, []error) {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	probed, errs := make([]rollout.Probed, len(targets)), make([]error, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, t := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			probed[i], errs[i] = rollout.Probe(pctx, bot, t)
		})
	}
	wg.Wait()
	return probed, errs
}
