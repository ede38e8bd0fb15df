package rollout

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// LocalNix runs nix where nestbot runs: to evaluate the toplevels a commit
// builds (EvalToplevels), to list a flake's hosts (FlakeAttributes), and,
// with build_on local, to build a host's system and nix copy it to the
// host over the same SSH login the rollout uses.
type LocalNix struct {
	// Command is the nix program; empty means "nix" on PATH.
	Command string
	// Args are put before every nix subcommand's own (e.g. "--option",
	// "sandbox", "false").
	Args []string
	// Env is added to nix's environment.
	Env []string
	// TempDir holds the repository nix reads the commit from; empty means
	// os.TempDir().
	TempDir string
}

// Available reports whether the nix program can be run.
func (n *LocalNix) Available() bool {
	_, err := exec.LookPath(n.command())
	return err == nil
}

func (n *LocalNix) command() string {
	if n.Command != "" {
		return n.Command
	}
	return "nix"
}

// run runs nix with args and returns its stdout.
func (n *LocalNix) run(ctx context.Context, env []string, args ...string) ([]byte, error) {
	argv := append([]string{"--extra-experimental-features", "nix-command flakes"}, n.Args...)
	cmd := exec.CommandContext(ctx, n.command(), append(argv, args...)...)
	cmd.Env = append(append(os.Environ(), n.Env...), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &limitedWriter{buf: &stderr, max: outputLimit}
	if err := cmd.Run(); err != nil {
		var keep []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if !strings.HasPrefix(l, "warning: ") && !strings.HasPrefix(l, "(use '--show-trace'") && strings.TrimSpace(l) != "" {
				keep = append(keep, l)
			}
		}
		msg := strings.Join(keep, "\n")
		if len(msg) > 1500 {
			msg = "…" + msg[len(msg)-1500:]
		}
		return nil, fmt.Errorf("nix %s: %w: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

// Checkout is a commit written into a shallow git repository where
// nestbot runs, for nix to read as git+file://…?rev=, as on the hosts.
type Checkout struct {
	dir      string
	rev      string
	flakeDir string
	worktree string // a flake reference to a work tree as it is (WorkTree)
}

// WorkTree is the flake at flakeDir in the checkout at dir as it is now,
// uncommitted changes to tracked files included (as nix reads a dirty
// git tree), for checks before a commit: git+file:// when dir is a git
// checkout, else path:.
func WorkTree(dir, flakeDir string, isGit bool) *Checkout {
	ref := "path:" + filepath.Join(dir, flakeDir)
	if isGit {
		ref = "git+file://" + dir
		if flakeDir != "." && flakeDir != "" {
			ref += "?dir=" + flakeDir
		}
	}
	return &Checkout{worktree: ref}
}

// Checkout writes the commit rev of src into a new repository. Close
// removes it.
func (n *LocalNix) Checkout(ctx context.Context, src Source, rev, flakeDir string) (*Checkout, error) {
	if !validRevision.MatchString(rev) {
		return nil, fmt.Errorf("bad revision %q", rev)
	}
	dir, err := os.MkdirTemp(n.TempDir, "nestbot-src-")
	if err != nil {
		return nil, err
	}
	co := &Checkout{dir: dir, rev: rev, flakeDir: cmp.Or(flakeDir, ".")}
	git := func(stdin io.Reader, args ...string) error {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Stdin = stdin
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", args[0], err, bytes.TrimSpace(out))
		}
		return nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(src.WritePack(pw, rev)) }()
	err = git(nil, "init", "-q")
	if err == nil {
		err = git(pr, "unpack-objects", "-q")
	}
	pr.Close()
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ".git", "shallow"), []byte(rev+"\n"), 0o644)
	}
	if err == nil {
		err = git(nil, "update-ref", "refs/heads/nest", rev)
	}
	if err == nil {
		err = git(nil, "symbolic-ref", "HEAD", "refs/heads/nest")
	}
	if err != nil {
		co.Close()
		return nil, fmt.Errorf("write commit %s for nix: %w", shortRev(rev), err)
	}
	return co, nil
}

// Close removes the repository.
func (co *Checkout) Close() error {
	if co.dir == "" {
		return nil
	}
	return os.RemoveAll(co.dir)
}

func (co *Checkout) ref() string {
	if co.worktree != "" {
		return co.worktree
	}
	return names{rev: co.rev, flakeDir: co.flakeDir}.flakeRef(co.dir)
}

// evalFlags keep an evaluation from building anything (import from
// derivation) or reading outside the flake.
var evalFlags = []string{"--option", "allow-import-from-derivation", "false"}

// EvalToplevels evaluates, for each flake attribute, the store path of its
// nixosConfigurations.<attr>.config.system.build.toplevel at the commit, in
// one nix eval (nothing is built).
func (n *LocalNix) EvalToplevels(ctx context.Context, co *Checkout, attrs []string) (map[string]string, error) {
	var list []string
	for _, a := range attrs {
		if !validAttr.MatchString(a) {
			return nil, fmt.Errorf("bad flake attribute %q", a)
		}
		list = append(list, `"`+a+`"`)
	}
	apply := `cs: builtins.listToAttrs (map (a: { name = a; value = cs.${a}.config.system.build.toplevel.outPath; }) [ ` + strings.Join(list, " ") + ` ])`
	out, err := n.run(ctx, nil, append([]string{"eval", "--json", co.ref() + "#nixosConfigurations", "--apply", apply}, evalFlags...)...)
	if err != nil {
		return nil, err
	}
	tops := map[string]string{}
	if err := json.Unmarshal(out, &tops); err != nil {
		return nil, fmt.Errorf("nix eval printed %q: %w", abbreviate(string(out)), err)
	}
	return tops, nil
}

// FlakeAttributes lists the flake's nixosConfigurations.
func (n *LocalNix) FlakeAttributes(ctx context.Context, co *Checkout) ([]string, error) {
	out, err := n.run(ctx, nil, append([]string{"eval", "--json", co.ref() + "#nixosConfigurations", "--apply", "builtins.attrNames"}, evalFlags...)...)
	if err != nil {
		return nil, err
	}
	var attrs []string
	if err := json.Unmarshal(out, &attrs); err != nil {
		return nil, fmt.Errorf("nix eval printed %q: %w", abbreviate(string(out)), err)
	}
	return attrs, nil
}

// HostNames evaluates each attribute's networking.hostName.
func (n *LocalNix) HostNames(ctx context.Context, co *Checkout, attrs []string) (map[string]string, error) {
	var list []string
	for _, a := range attrs {
		if !validAttr.MatchString(a) {
			return nil, fmt.Errorf("bad flake attribute %q", a)
		}
		list = append(list, `"`+a+`"`)
	}
	apply := `cs: builtins.listToAttrs (map (a: { name = a; value = cs.${a}.config.networking.hostName or ""; }) [ ` + strings.Join(list, " ") + ` ])`
	out, err := n.run(ctx, nil, append([]string{"eval", "--json", co.ref() + "#nixosConfigurations", "--apply", apply}, evalFlags...)...)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	if err := json.Unmarshal(out, &names); err != nil {
		return nil, fmt.Errorf("nix eval printed %q: %w", abbreviate(string(out)), err)
	}
	return names, nil
}

// Build builds the attribute's toplevel and returns its store path.
func (n *LocalNix) Build(ctx context.Context, co *Checkout, attr string) (string, error) {
	if !validAttr.MatchString(attr) {
		return "", fmt.Errorf("bad flake attribute %q", attr)
	}
	out, err := n.run(ctx, nil, "build", "--json", "--no-link", co.ref()+"#"+toplevelAttr(attr))
	if err != nil {
		return "", err
	}
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(out, &built); err != nil || len(built) != 1 || built[0].Outputs["out"] == "" {
		return "", fmt.Errorf("nix build printed %q, not one built output", abbreviate(string(out)))
	}
	return built[0].Outputs["out"], nil
}

// localBuild is a run's builds where nestbot runs: one per attribute, and
// the copies to hosts.
type localBuild struct {
	nix  *LocalNix
	cfg  Rollout
	mu   sync.Mutex
	co   *Checkout
	coEr error
	done map[string]*localResult
}

type localResult struct {
	once sync.Once
	path string
	err  error
}

func newLocalBuild(cfg Rollout) *localBuild {
	return &localBuild{nix: cfg.Nix, cfg: cfg, done: map[string]*localResult{}}
}

func (l *localBuild) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.co != nil {
		l.co.Close()
	}
}

// build builds attr's toplevel once per run, whichever host asks first.
func (l *localBuild) build(ctx context.Context, attr string) (string, error) {
	l.mu.Lock()
	if l.co == nil && l.coEr == nil {
		l.co, l.coEr = l.nix.Checkout(ctx, l.cfg.Source, l.cfg.Revision, l.cfg.FlakeDir)
	}
	co, coErr := l.co, l.coEr
	r := l.done[attr]
	if r == nil {
		r = &localResult{}
		l.done[attr] = r
	}
	l.mu.Unlock()
	if coErr != nil {
		return "", coErr
	}
	r.once.Do(func() {
		bctx, cancel := context.WithTimeout(ctx, l.cfg.BuildTimeout)
		defer cancel()
		r.path, r.err = l.nix.Build(bctx, co, attr)
	})
	if r.err != nil {
		return "", fmt.Errorf("build nixosConfigurations.%s where nestbot runs: %w", attr, r.err)
	}
	return r.path, nil
}

// copyTo copies path's closure to the host with nix copy, over the same
// way in as the rollout's own sessions: each of ssh's connections is
// dialed over the tailnet (a loopback listener forwards it), the host key
// is the pinned one, and nestbot's key is offered by an agent in this
// process (it is never written to a file). A login user other than root
// runs the host's nix-store --serve through sudo.
func (l *localBuild) copyTo(ctx context.Context, h *hostRun, path string) error {
	key := h.conn.hostKey()
	if key == nil {
		return errors.New("nix copy: the host key is not known yet")
	}
	dir, err := os.MkdirTemp(l.nix.TempDir, "nestbot-ssh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	alias := "nestbot-" + h.target.Name
	known := alias + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(known), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { forward(cctx, ln, h.conn, &wg) })
	opts := []string{"-p", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port), "-o", "BatchMode=yes", "-o", "HostKeyAlias=" + alias,
		"-o", "UserKnownHostsFile=" + filepath.Join(dir, "known_hosts"), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlgorithms=" + strings.Join(algorithmsFor(key), ","),
		"-o", "ServerAliveInterval=5", "-F", "/dev/null"}
	login := h.target.Login
	if login.Key != nil {
		sock := filepath.Join(dir, "agent")
		al, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		defer al.Close()
		wg.Go(func() { serveAgent(cctx, al, login.Key, &wg) })
		opts = append(opts, "-o", "IdentityAgent="+sock, "-o", "IdentitiesOnly=no", "-o", "PubkeyAuthentication=yes")
	}
	// The ssh:// store (nix-store --serve --write on the host) takes
	// paths nobody signed, as colmena's and deploy-rs's copies are; the
	// ssh-ng:// store's nix-daemon --stdio trusts no one when no daemon
	// runs there, and refuses them.
	program := "nix-store"
	if login.user() != "root" {
		program = "sudo -n " + SudoBinDir + "/nix-store"
	}
	to := "ssh://" + login.user() + "@127.0.0.1?remote-program=" + strings.ReplaceAll(program, " ", "%20")
	if _, err := l.nix.run(ctx, []string{"NIX_SSHOPTS=" + strings.Join(opts, " ")}, "copy", "--to", to, path); err != nil {
		return fmt.Errorf("nix copy to %s: %w", h.target.Name, err)
	}
	return nil
}

// forward accepts loopback connections until ctx is done and joins each to
// a new connection to the host over the tailnet.
func forward(ctx context.Context, ln net.Listener, c *conn, wg *sync.WaitGroup) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		lc, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer lc.Close()
			dctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
			rc, err := c.dialer.Dial(dctx, "tcp", c.target.addr())
			cancel()
			if err != nil {
				c.warn(c.target.Name, "nix copy: dial", "err", err)
				return
			}
			defer rc.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(rc, lc); done <- struct{}{} }()
			go func() { io.Copy(lc, rc); done <- struct{}{} }()
			select {
			case <-done:
			case <-ctx.Done():
			}
		})
	}
}

// serveAgent answers ssh-agent requests with the one key, until ctx is done.
func serveAgent(ctx context.Context, ln net.Listener, key ssh.Signer, wg *sync.WaitGroup) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	a := &oneKeyAgent{key: key}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			go func() { <-ctx.Done(); c.Close() }()
			agent.ServeAgent(a, c)
		})
	}
}

// oneKeyAgent is an ssh-agent holding one signer, which it only signs with.
type oneKeyAgent struct{ key ssh.Signer }

var errReadOnlyAgent = errors.New("nestbot's agent only signs")

func (a *oneKeyAgent) List() ([]*agent.Key, error) {
	pub := a.key.PublicKey()
	return []*agent.Key{{Format: pub.Type(), Blob: pub.Marshal(), Comment: "nestbot"}}, nil
}

func (a *oneKeyAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

func (a *oneKeyAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if !bytes.Equal(key.Marshal(), a.key.PublicKey().Marshal()) {
		return nil, errors.New("nestbot's agent holds no such key")
	}
	if as, ok := a.key.(ssh.AlgorithmSigner); ok {
		switch {
		case flags&agent.SignatureFlagRsaSha512 != 0:
			return as.SignWithAlgorithm(nil, data, ssh.KeyAlgoRSASHA512)
		case flags&agent.SignatureFlagRsaSha256 != 0:
			return as.SignWithAlgorithm(nil, data, ssh.KeyAlgoRSASHA256)
		}
	}
	return a.key.Sign(nil, data)
}

func (a *oneKeyAgent) Signers() ([]ssh.Signer, error) { return []ssh.Signer{a.key}, nil }
func (a *oneKeyAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}
func (a *oneKeyAgent) Add(agent.AddedKey) error   { return errReadOnlyAgent }
func (a *oneKeyAgent) Remove(ssh.PublicKey) error { return errReadOnlyAgent }
func (a *oneKeyAgent) RemoveAll() error           { return errReadOnlyAgent }
func (a *oneKeyAgent) Lock([]byte) error          { return errReadOnlyAgent }
func (a *oneKeyAgent) Unlock([]byte) error        { return errReadOnlyAgent }

// limitedWriter keeps the last max bytes written to it.
type limitedWriter struct {
	buf *bytes.Buffer
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if over := w.buf.Len() - w.max; over > 0 {
		w.buf.Next(over)
	}
	return len(p), nil
}

func abbreviate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
