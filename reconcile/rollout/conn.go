package rollout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dialer opens connections over the tailnet. *tsnet.Server satisfies it.
type Dialer interface {
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
}

// Target is a host to reach: its name (as nest.yaml names it), its flake
// attribute, where to dial it, its pinned SSH host key and how to log in.
type Target struct {
	Name string
	// Attr is the host's nixosConfigurations attribute; empty means Name.
	Attr string
	// Addr is host:port to dial over the tailnet; empty means Name:22.
	Addr string
	// HostKey is the host's pinned SSH host key. Nil means "learn it on
	// first contact": the host is asked for its ed25519 key, which is
	// pinned for the rest of the run and reported (Probed.HostKey,
	// HostResult.HostKey) so the caller can pin it for good.
	HostKey ssh.PublicKey
	// Login is how to log in; the zero Login is Tailscale SSH as root.
	Login Login
}

// Ways in to a host (Login.Via).
const (
	ViaTailscale = "tailscale"
	ViaOpenSSH   = "openssh"
)

// Login is how nestbot logs in to a host.
type Login struct {
	// Via is ViaTailscale (Tailscale SSH: the tailnet policy's ssh rule
	// authenticates nestbot's node, no credentials) or ViaOpenSSH (the
	// host's sshd, with Key). Empty means ViaTailscale.
	Via string
	// User is the user to log in as; empty means root. A user other than
	// root runs nestbot's root commands through sudo (SudoRules).
	User string
	// Key is nestbot's own key, for ViaOpenSSH.
	Key ssh.Signer
}

func (l Login) user() string {
	if l.User == "" {
		return "root"
	}
	return l.User
}

func (l Login) via() string {
	if l.Via == "" {
		return ViaTailscale
	}
	return l.Via
}

func (t Target) addr() string {
	if t.Addr != "" {
		return t.Addr
	}
	return t.Name + ":22"
}

func (t Target) attr() string {
	if t.Attr != "" {
		return t.Attr
	}
	return t.Name
}

// HostKeyFile is where, on the host, the public half of the key a login
// path presents lives: sshd's own; and for Tailscale SSH, tailscaled
// (running as root) serves sshd's keys from /etc/ssh when they exist, else
// its own (ssh/tailssh/hostkeys.go).
func HostKeyFile(via, keyType string) string {
	typ := "ed25519"
	switch {
	case strings.HasPrefix(keyType, "ecdsa"):
		typ = "ecdsa"
	case strings.HasPrefix(keyType, "ssh-rsa"), strings.HasPrefix(keyType, "rsa-"):
		typ = "rsa"
	}
	f := "/etc/ssh/ssh_host_" + typ + "_key.pub"
	if via == ViaTailscale {
		return f + " (or, on a host without OpenSSH keys, ssh-keygen -y -f /var/lib/tailscale/ssh/ssh_host_" + typ + "_key)"
	}
	return f
}

// HostKeyError is returned when a host offers another key than the pinned
// one: nothing is run on it.
type HostKeyError struct {
	Host      string
	Via       string // the login path
	Want, Got ssh.PublicKey
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key changed: pinned %s %s, %s offers %s %s; if %s was reinstalled, pin its new key (%s on it)",
		e.Want.Type(), ssh.FingerprintSHA256(e.Want), e.Host, e.Got.Type(), ssh.FingerprintSHA256(e.Got), e.Host, HostKeyFile(e.Via, e.Want.Type()))
}

// connError is a failure of the connection rather than of a command: the
// command may be retried on a new connection.
type connError struct{ err error }

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}

// Connection settings. Tailscale SSH needs no client credentials (the
// tailnet peer is the identity): x/crypto/ssh offers "none" auth.
const (
	// keepaliveInterval is how often an idle connection is checked, and
	// keepaliveTimeout how long a check may go unanswered before the
	// connection counts as dead. A restarted tailscaled kills connections
	// silently: without these a client would wait forever.
	keepaliveInterval = time.Second
	keepaliveTimeout  = 3 * time.Second
	// outputLimit bounds what is kept of a command's stdout and stderr.
	outputLimit = 64 << 10
)

// Timings add up where a host's time went.
type Timings struct {
	Dial      time.Duration `json:"dial"`      // tsnet dials
	Handshake time.Duration `json:"handshake"` // SSH handshakes
	Probe     time.Duration `json:"probe"`     // probes and unit inspections
	Ship      time.Duration `json:"ship"`      // the commit's git pack
	Build     time.Duration `json:"build"`     // the toplevel's build (and, built where nestbot runs, its copy)
	Arm       time.Duration `json:"arm"`       // arming the dead-man rollback and starting the activation
	Activate  time.Duration `json:"activate"`  // the trial activation, until it ended (polls included)
	Health    time.Duration `json:"health"`    // the unit check and the health commands
	Confirm   time.Duration `json:"confirm"`   // disarming the rollback
	Boot      time.Duration `json:"boot"`      // making it the boot default, and recording it
	Rollback  time.Duration `json:"rollback,omitempty"`
}

// conn is one host's SSH client over the tailnet, dialed on demand and
// again after it broke.
type conn struct {
	dialer      Dialer
	target      Target
	dialTimeout time.Duration
	warn        func(host, msg string, args ...any)

	dialMu sync.Mutex // one dial at a time

	mu      sync.Mutex
	client  *ssh.Client
	key     ssh.PublicKey // pinned, or learned on the first handshake
	dials   int
	timings Timings
}

func newConn(d Dialer, t Target, dialTimeout time.Duration, warn func(host, msg string, args ...any)) *conn {
	return &conn{dialer: d, target: t, key: t.HostKey, dialTimeout: dialTimeout, warn: warn}
}

// hostKey is the key pinned for the host (nil until learned).
func (c *conn) hostKey() ssh.PublicKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key
}

// reconnects is how many dials followed the first.
func (c *conn) reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.dials-1, 0)
}

func (c *conn) addTiming(f func(*Timings)) {
	c.mu.Lock()
	f(&c.timings)
	c.mu.Unlock()
}

func (c *conn) getTimings() Timings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timings
}

// get returns the open client, dialing one if there is none.
func (c *conn) get(ctx context.Context) (*ssh.Client, error) {
	c.mu.Lock()
	cl := c.client
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	cl, pinned := c.client, c.key
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	cl, seen, err := c.dial(ctx, pinned)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.client = cl
	if c.key == nil {
		c.key = seen
	}
	c.dials++
	c.mu.Unlock()
	go c.keepalive(cl)
	return cl, nil
}

// dial opens a connection and does the SSH handshake, both bounded by ctx
// and the dial timeout.
func (c *conn) dial(ctx context.Context, pinned ssh.PublicKey) (*ssh.Client, ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	addr := c.target.addr()
	start := time.Now()
	nc, err := c.dialer.Dial(ctx, "tcp", addr)
	c.addTiming(func(t *Timings) { t.Dial += time.Since(start) })
	if err != nil {
		return nil, nil, &connError{fmt.Errorf("dial %s: %w", addr, err)}
	}
	start = time.Now()
	defer func() { c.addTiming(func(t *Timings) { t.Handshake += time.Since(start) }) }()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	var seen ssh.PublicKey
	login := c.target.Login
	cfg := &ssh.ClientConfig{
		User:            login.user(),
		HostKeyCallback: pinningCallback(c.target.Name, login.via(), pinned, &seen),
		Timeout:         c.dialTimeout,
		// Learning, ask for the ed25519 key (the one to pin: Go's client
		// would otherwise take the ecdsa key a host offers first).
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
	}
	if pinned != nil {
		cfg.HostKeyAlgorithms = algorithmsFor(pinned)
	}
	if login.Key != nil {
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(login.Key)}
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, nil, hk
		}
		if strings.Contains(err.Error(), "no common algorithm for host key") {
			want := "ssh-ed25519"
			if pinned != nil {
				want = pinned.Type()
			}
			return nil, nil, fmt.Errorf("ssh handshake with %s: the host offers no %s key (%s on it): %w", addr, want, HostKeyFile(login.via(), want), err)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, nil, fmt.Errorf("ssh handshake with %s: %s refused %s as %s: %w", addr, c.target.Name, loginWords(login), login.user(), err)
		}
		return nil, nil, &connError{fmt.Errorf("ssh handshake with %s: %w", addr, err)}
	}
	if !stop() {
		sc.Close()
		return nil, nil, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), seen, nil
}

// loginWords says how a refused login was tried, and what to check.
func loginWords(l Login) string {
	if l.via() == ViaOpenSSH {
		return "nestbot's key (is its public half in the user's authorized_keys, and the user in sshd's AllowUsers?)"
	}
	return "Tailscale SSH (does the tailnet policy have an ssh rule accepting nestbot's tag for this user, and does the host run tailscale up --ssh?)"
}

// pinningCallback checks the host key against pinned (ssh.FixedHostKey),
// or, with nothing pinned, accepts it; either way *seen is the key offered.
func pinningCallback(host, via string, pinned ssh.PublicKey, seen *ssh.PublicKey) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		*seen = key
		if pinned == nil {
			return nil
		}
		if err := ssh.FixedHostKey(pinned)(hostname, remote, key); err != nil {
			return &HostKeyError{Host: host, Via: via, Want: pinned, Got: key}
		}
		return nil
	}
}

// algorithmsFor asks the server for the pinned key's algorithm, so that a
// host with several keys offers the pinned one.
func algorithmsFor(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// keepalive checks the connection every keepaliveInterval and closes it
// when a check goes unanswered, so that sessions on it fail instead of
// waiting forever.
func (c *conn) keepalive(cl *ssh.Client) {
	closed := make(chan struct{})
	go func() {
		cl.Wait()
		close(closed)
	}()
	tick := time.NewTicker(keepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			c.drop(cl)
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := cl.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(keepaliveTimeout)
		select {
		case err := <-reply:
			timer.Stop()
			if err != nil {
				c.warn(c.target.Name, "connection lost", "err", err)
				c.drop(cl)
				return
			}
		case <-timer.C:
			c.warn(c.target.Name, "connection dead: no keepalive reply", "within", keepaliveTimeout)
			c.drop(cl)
			return
		case <-closed:
			timer.Stop()
			c.drop(cl)
			return
		}
	}
}

// drop closes cl and forgets it, if it is still the current client.
func (c *conn) drop(cl *ssh.Client) {
	c.mu.Lock()
	if c.client == cl {
		c.client = nil
	}
	c.mu.Unlock()
	cl.Close()
}

// close closes the current client, if any.
func (c *conn) close() {
	c.mu.Lock()
	cl := c.client
	c.client = nil
	c.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}

// result is how a command ended on the host.
type result struct {
	Status         int
	Stdout, Stderr string
}

// brief is the tail of the command's output, for an error message.
func (r result) brief() string {
	s := r.Stderr
	if s == "" {
		s = r.Stdout
	}
	s = string(bytes.TrimSpace([]byte(s)))
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}

// run runs one command line in a new session. An error is a failure to
// run it or to learn how it ended (a *connError: the connection is gone);
// the command's own exit status is in the result.
func (c *conn) run(ctx context.Context, cmd string, stdin io.Reader) (result, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return result{}, err
	}
	s, err := cl.NewSession()
	if err != nil {
		c.drop(cl)
		return result{}, &connError{fmt.Errorf("new session: %w", err)}
	}
	defer s.Close()
	stdout := &limitedBuffer{max: outputLimit}
	stderr := &limitedBuffer{max: outputLimit}
	s.Stdout, s.Stderr = stdout, stderr
	if stdin != nil {
		s.Stdin = stdin
	}
	if err := s.Start(cmd); err != nil {
		c.drop(cl)
		return result{}, &connError{fmt.Errorf("start session: %w", err)}
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// The session's end is not known: drop the connection with it.
		c.drop(cl)
		<-done
		return result{}, ctx.Err()
	}
	r := result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return r, nil
	case errors.As(err, &exit):
		r.Status = exit.ExitStatus()
		return r, nil
	case ctx.Err() != nil:
		return r, ctx.Err()
	default:
		c.drop(cl)
		return r, &connError{fmt.Errorf("session ended without an exit status: %w", err)}
	}
}

// retry runs a command that is safe to run again until it ran, bounded by
// ctx, reconnecting when the connection breaks. stdin, if set, makes the
// input of each attempt.
func (c *conn) retry(ctx context.Context, cmd string, stdin func() (io.Reader, func())) (result, error) {
	backoff := 100 * time.Millisecond
	for {
		var in io.Reader
		var done func()
		if stdin != nil {
			in, done = stdin()
		}
		r, err := c.run(ctx, cmd, in)
		if done != nil {
			done()
		}
		if err == nil || !retryable(err) {
			return r, err
		}
		if ctx.Err() != nil {
			return r, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		c.warn(c.target.Name, "reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
