package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/pki/certtree"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
	"github.com/ducksnest/nestbot/store"
)

// Options say how to reach the live fleet.
type Options struct {
	// Getenv reads the environment (secrets, AWS_*, XDG_STATE_HOME, ...).
	Getenv func(string) string
	// AWSEndpoint overrides the EC2 endpoint (--aws-endpoint); the SDK's
	// AWS_ENDPOINT_URL works too.
	AWSEndpoint string
	Tailnet     TailnetOptions
	// TailscaleAPIURL overrides TAILSCALE_BASE_URL (the lab's API).
	TailscaleAPIURL string
	// Planes limits what is observed (nil: every plane nest.yaml has).
	Planes []reconcile.Plane
	// DB is the state file already open in this process (the server's);
	// nil opens <state dir>/nestbot.db for the rollout journal.
	DB *store.DB
	// Nix runs nix where nestbot runs: to evaluate the toplevel each host's
	// configuration builds at the target (so a host is due exactly when its
	// system changes), and for rollout.build_on local. Nil means nix on
	// PATH, if there is one.
	Nix *rollout.LocalNix
	// SecretsDir is the only directory a file: reference in nest.yaml may
	// name (--secrets-dir); "" refuses file: references.
	SecretsDir string
	// ProbeTimeout bounds each host's probe, observing and learning host
	// keys (0: DefaultProbeTimeout).
	ProbeTimeout time.Duration
	// Mask, if set, receives every secret minted or read from a file while
	// observing and applying (auth keys, the OAuth client secret, the age
	// identity), before it is used: the Action masks them in the job's
	// log. One straight from an environment variable is not: the runner
	// masks the workflow's secrets itself.
	Mask func(secret string)
	// EC2 is the EC2 API the cloud plane is observed and applied through
	// (nil: the SDK's client, for aws.region and AWSEndpoint).
	EC2 nestaws.EC2
	// Logger receives what observing and applying log: the cloud and
	// tailnet steps' progress, the certificates issued, the rollout's
	// diagnostics (and its host events when ApplyOptions.Events is nil);
	// nil discards.
	Logger *slog.Logger
}

// nix is the local nix, or nil when there is none.
func (o Options) nix() *rollout.LocalNix {
	n := o.Nix
	if n == nil {
		n = &rollout.LocalNix{}
	}
	if !n.Available() {
		return nil
	}
	return n
}

// mask hands secret to Mask, if any.
func (o Options) mask(secret string) {
	if o.Mask != nil && secret != "" {
		o.Mask(secret)
	}
}

// maskUnlessEnv masks secret, resolved from ref, unless it came straight
// from an environment variable.
func (o Options) maskUnlessEnv(ref *nest.SecretRef, secret string) {
	if ref != nil && ref.Env != "" && o.Getenv(ref.Env) != "" {
		return
	}
	o.mask(secret)
}

// TailnetOptions are how nestbot's own tailnet node joins.
type TailnetOptions struct {
	ControlURL string // default: tailnet.control_url, else Tailscale's
	AuthKey    string // default: NESTBOT_TS_AUTHKEY_FILE, else tailnet.auth_key
	Hostname   string // default "nestbot"
	StateDir   string // default $XDG_STATE_HOME/nestbot
}

// StateDirOr is the state directory: StateDir, or $XDG_STATE_HOME/nestbot,
// or ~/.local/state/nestbot.
func (t TailnetOptions) StateDirOr(getenv func(string) string) string {
	if t.StateDir != "" {
		return t.StateDir
	}
	if x := getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "nestbot")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "nestbot")
	}
	return filepath.Join(home, ".local", "state", "nestbot")
}

// authKey is the node's key: AuthKey, NESTBOT_TS_AUTHKEY_FILE, or the
// fleet's tailnet.auth_key.
func (t TailnetOptions) authKey(f *nest.Fleet, getenv func(string) string, secretsDir string) (string, error) {
	if t.AuthKey != "" {
		return t.AuthKey, nil
	}
	if file := getenv("NESTBOT_TS_AUTHKEY_FILE"); file != "" {
		return nest.ReadSecretFile(file) // the operator's
	}
	if f.Tailnet.AuthKey != nil {
		return f.Tailnet.AuthKey.Resolve(getenv, secretsDir)
	}
	return "", errors.New("no auth key for nestbot's tailnet node: set tailnet.auth_key in nest.yaml or --ts-authkey")
}

// Session is one observation of the live fleet, and the clients that made
// it, for planning and applying. What it observed does not change after
// Observe: an apply keeps what its planes change (the nodes new hosts
// joined as, the certificates' commit) to itself and returns it.
type Session struct {
	desired *Desired
	ec2     nestaws.EC2   // nil when the cloud plane was not observed
	bot     *tsnet.Server // nestbot's tailnet node, or nil
	repo    *Repo         // the git checkout holding nest.yaml, or nil
	live    *reconcile.Live
	// hostErrors says why a host could not be probed.
	hostErrors map[string]error

	// The tailnet as bound to the hosts (nesttailnet.Bind): every node id
	// observed, and what was refused and why.
	seen    map[string]bool
	refused []string

	opts Options
}

// Desired is the desired state the session was observed for.
func (s *Session) Desired() *Desired { return s.desired }

// Live is the live state as observed: a copy, whose maps the session
// shares and the caller must not change.
func (s *Session) Live() *reconcile.Live { return cloneLive(s.live) }

// HostErrors says why each host that could not be probed could not.
func (s *Session) HostErrors() map[string]error { return maps.Clone(s.hostErrors) }

// Repo is the git checkout holding nest.yaml, or nil.
func (s *Session) Repo() *Repo { return s.repo }

// OnTailnet says whether nestbot joined the tailnet, so the tailnet and
// the hosts were observed and can be applied.
func (s *Session) OnTailnet() bool { return s.bot != nil }

// cloneLive copies l's top level: what an apply replaces (the tailnet, as
// rebound) is replaced in the copy alone.
func cloneLive(l *reconcile.Live) *reconcile.Live {
	c := *l
	c.Planes = slices.Clone(l.Planes)
	return &c
}

// Close leaves the tailnet.
func (s *Session) Close() {
	if s != nil && s.bot != nil {
		s.bot.Close()
	}
}

// StateDir is where the session keeps state (journal, tsnet).
func (s *Session) StateDir() string { return s.opts.Tailnet.StateDirOr(s.opts.Getenv) }

// Plan diffs the desired state against what was observed. revision is the
// commit the plan is for ("" for the checkout's HEAD).
func (s *Session) Plan(revision string) (*reconcile.Plan, error) {
	return s.plan(s.live, revision)
}

// PlanPlanes is Plan of the given planes alone (observed, all of them),
// as if the others had not been observed.
func (s *Session) PlanPlanes(revision string, planes ...reconcile.Plane) (*reconcile.Plan, error) {
	live := cloneLive(s.live)
	live.Planes = slices.Clone(planes)
	return s.plan(live, revision)
}

func (s *Session) plan(live *reconcile.Live, revision string) (*reconcile.Plan, error) {
	plan, err := reconcile.Diff(s.desired.reconcileDesired(), live, reconcile.Options{Revision: revision})
	if err != nil {
		return nil, fmt.Errorf("plan %s:\n  %s", s.desired.Fleet.Name, strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	plan.Notes = append(plan.Notes, s.refused...)
	return plan, nil
}

// CheckSaved refuses a saved plan made from another nest.yaml or another
// live state than the session's, and says how the plan differs now.
func (s *Session) CheckSaved(saved *reconcile.SavedPlan) error {
	err := saved.Check(s.desired.Digest(), s.live)
	if !errors.Is(err, reconcile.ErrLiveChanged) {
		return err
	}
	now, perr := s.Plan(saved.Plan.Revision)
	if perr != nil {
		return err
	}
	return fmt.Errorf("%w (%s)", err, saved.Delta(now))
}

func (o Options) wants(p reconcile.Plane) bool {
	if o.Planes == nil {
		return true
	}
	for _, q := range o.Planes {
		if q == p {
			return true
		}
	}
	return false
}

// Observe reads the live fleet: the cloud plane when nest.yaml has an aws
// section, the tailnet and the hosts when nestbot can join the tailnet,
// and the certificate tree. Planes not observed are not planned, and the
// plan says so.
func Observe(ctx context.Context, d *Desired, opts Options) (*Session, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	live := &reconcile.Live{FormatVersion: reconcile.FormatVersion, ObservedAt: time.Now().UTC()}
	s := &Session{desired: d, opts: opts, live: live}
	live.Planes = []reconcile.Plane{}
	if opts.wants(reconcile.PlaneTailnet) || opts.wants(reconcile.PlaneHosts) {
		bot, err := join(ctx, d, opts)
		if err != nil {
			return nil, err
		}
		if bot != nil {
			s.bot = bot
			if live.Tailnet, err = nesttailnet.Observe(ctx, bot); err != nil {
				s.Close()
				return nil, fmt.Errorf("observe the tailnet: %w", err)
			}
			s.seen = seenNodes(live.Tailnet.Nodes)
			live.Tailnet.Nodes, s.refused = s.bind(live.Tailnet.Nodes, nil)
			live.Planes = append(live.Planes, reconcile.PlaneTailnet)
			s.repo = OpenRepo(d.Root)
			live.Hosts, s.hostErrors = observeHosts(ctx, bot, d, live, opts.Getenv, opts.SecretsDir, opts.ProbeTimeout)
			s.repo.fill(live)
			s.repo.evalToplevels(ctx, d, opts.nix(), live)
			live.Planes = append(live.Planes, reconcile.PlaneHosts)
		}
	}
	if d.Fleet.PKI != nil && opts.wants(reconcile.PlanePKI) {
		certs, err := observeCerts(ctx, d, live, s.bot)
		if err != nil {
			s.Close()
			return nil, err
		}
		live.PKI.Certs = certs
		live.Planes = append(live.Planes, reconcile.PlanePKI)
	}
	if d.Fleet.AWS == nil || !opts.wants(reconcile.PlaneCloud) {
		return s, nil
	}
	client := opts.EC2
	if client == nil {
		c, err := nestaws.NewClient(ctx, nestaws.ClientOptions{Region: d.Fleet.AWS.Region, Endpoint: opts.AWSEndpoint})
		if err != nil {
			s.Close()
			return nil, err
		}
		client = c
	}
	cloud, err := (&nestaws.Observer{Client: client}).Observe(ctx, d.Fleet)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("observe the cloud: %w", err)
	}
	s.ec2, live.Cloud = client, cloud
	live.Planes = append(live.Planes, reconcile.PlaneCloud)
	return s, nil
}

// seenNodes are the ids of nodes.
func seenNodes(nodes []reconcile.Node) map[string]bool {
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		seen[n.ID] = true
	}
	return seen
}

// bind keeps the nodes that may stand for the fleet's hosts
// (nesttailnet.Bind): by the fleet's tags and the node ids pinned for the
// hosts, or joined as them during an apply (joined, host → node id).
func (s *Session) bind(nodes []reconcile.Node, joined map[string]string) ([]reconcile.Node, []string) {
	d := s.desired
	hosts := map[string]string{}
	for name, h := range d.Fleet.Hosts {
		hosts[name] = h.TailnetNode()
	}
	return nesttailnet.Bind(nodes, nesttailnet.BindOptions{Hosts: hosts, Tags: d.Fleet.Tailnet.Tags, Pinned: s.pinnedNodes(joined)})
}

// pinnedNodes are the node ids pinned for the hosts, with those new hosts
// joined as during an apply.
func (s *Session) pinnedNodes(joined map[string]string) map[string]string {
	pinned := maps.Clone(s.desired.Nodes)
	if pinned == nil {
		pinned = map[string]string{}
	}
	maps.Copy(pinned, joined)
	return pinned
}

// join starts nestbot's own ephemeral node. It returns nil, nil when there
// is no way to join (no key): the tailnet plane is then not observed.
func join(ctx context.Context, d *Desired, opts Options) (*tsnet.Server, error) {
	t, getenv := opts.Tailnet, opts.Getenv
	key, err := t.authKey(d.Fleet, getenv, opts.SecretsDir)
	if err != nil {
		return nil, nil
	}
	switch {
	case t.AuthKey != "": // a flag, as the operator gave it
	case getenv("NESTBOT_TS_AUTHKEY_FILE") != "":
		opts.mask(key)
	default:
		opts.maskUnlessEnv(d.Fleet.Tailnet.AuthKey, key)
	}
	control := t.ControlURL
	if control == "" {
		control = d.Fleet.Tailnet.ControlURL
	}
	hostname := t.Hostname
	if hostname == "" {
		hostname = "nestbot"
	}
	dir := filepath.Join(t.StateDirOr(getenv), "tsnet", d.Fleet.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := nesttailnet.Join(ctx, nesttailnet.Config{Hostname: hostname, Dir: dir, InMemory: true, Ephemeral: true,
		AuthKey: key, ControlURL: control})
	if err != nil {
		return nil, fmt.Errorf("join the tailnet: %w", err)
	}
	return s, nil
}

// observeCerts reads the certificate tree in the repository. A tree that
// does not exist yet holds no certificates; a file that cannot be read is
// an error naming it.
//
// With the tailnet joined, it also reads the certificate each host serves
// (a TLS handshake to its serving ports) and marks the certificates a host
// still serves an older version of: "not yet rolled".
func observeCerts(ctx context.Context, d *Desired, live *reconcile.Live, bot *tsnet.Server) (map[string]reconcile.Cert, error) {
	dir := d.PKIDir()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return map[string]reconcile.Cert{}, nil
	}
	observed, err := certtree.Observe(dir, live.ObservedAt)
	if err != nil {
		return nil, fmt.Errorf("observe the certificates: %w", err)
	}
	notRolled := map[string][]string{} // certificate id → host:port still serving an older one
	if bot != nil {
		byNode := d.HostsByNode()
		for _, n := range live.Tailnet.Nodes {
			host, ok := byNode[n.Name]
			if !ok || len(n.IPs) == 0 {
				continue
			}
			served, _ := certtree.ProbeServed(ctx, bot.Dial, n.IPs[0], d.Fleet.PKI.ServingPorts)
			for _, hp := range certtree.NotRolled(observed, host, served) {
				_, portStr, _ := strings.Cut(hp, ":")
				port, _ := strconv.Atoi(portStr)
				if leaf := certtree.ServedLeaf(port); leaf != "" {
					id := d.Fleet.Hosts[host].NetworkingHostName() + "/" + leaf
					notRolled[id] = append(notRolled[id], hp)
				}
			}
		}
	}
	certs := make(map[string]reconcile.Cert, len(observed))
	for id, o := range observed {
		if !o.HasKey {
			continue // a certificate without its key is as good as missing: it is issued again
		}
		certs[id] = reconcile.Cert{CommonName: o.CommonName, Organization: o.Organization, DNSNames: o.DNSNames, IPs: o.IPs,
			Usages: o.Usages, IsCA: o.IsCA, Issuer: o.Issuer, NotBefore: o.NotBefore, NotAfter: o.NotAfter, Recipients: o.Recipients,
			Path: o.CertPath, KeyOnly: o.KeyOnly, KeyAlgorithm: o.KeyAlgorithm, Signer: o.Signer, Adopted: !o.KeyOnly && !o.IssuedByNestbot && o.Error == "",
			KeyStanzas: o.KeyStanzas, NotRolled: notRolled[id]}
	}
	return certs, nil
}

// refresh observes the cloud and the tailnet again, for steps that depend
// on what earlier steps of the same apply created: live with those two
// planes replaced, the tailnet bound with the nodes joined during it.
func (s *Session) refresh(ctx context.Context, live *reconcile.Live, joined map[string]string) (*reconcile.Live, error) {
	l := *live
	var err error
	if s.ec2 != nil {
		if l.Cloud, err = (&nestaws.Observer{Client: s.ec2}).Observe(ctx, s.desired.Fleet); err != nil {
			return nil, fmt.Errorf("observe the cloud again: %w", err)
		}
	}
	if s.bot != nil {
		if l.Tailnet, err = nesttailnet.Observe(ctx, s.bot); err != nil {
			return nil, fmt.Errorf("observe the tailnet again: %w", err)
		}
		l.Tailnet.Nodes, _ = s.bind(l.Tailnet.Nodes, joined)
	}
	return &l, nil
}

// pinElsewhere pins a learned host key in hosts.<name>.host_key, and
// returns the file's path relative to pki.dir (for the certificates'
// commit).
func pinElsewhere(d *Desired, h *nest.Host, key string) (string, error) {
	file := d.HostKeyFile(h)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", fmt.Errorf("pin host key of %s: %w", h.Name, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("pin host key of %s: %w", h.Name, err)
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("pin host key of %s: %w", h.Name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("pin host key of %s: %w", h.Name, err)
	}
	if d.Pins == nil {
		d.Pins = map[string]string{}
	}
	d.Pins[h.Name] = key
	return filepath.Rel(d.PKIDir(), file)
}

// learnHostKeys probes the hosts that have no pinned key yet (a new
// instance that just joined), and pins what they present (their ed25519
// key) in hosts.<name>.host_key, by default <pki.dir>/hosts/<host>.pub. It returns the files written, relative to
// pki.dir, and a warning for each host that did not answer: its keys stay
// encrypted to the admins only, and the next apply tries again. A pinned
// key is never replaced.
func (s *Session) learnHostKeys(ctx context.Context, live *reconcile.Live) (written, warnings []string, err error) {
	d := s.desired
	if s.bot == nil || d.Fleet.PKI == nil {
		return nil, nil, nil
	}
	ts, err := Targets(d, live, s.opts.Getenv, s.opts.SecretsDir)
	if err != nil {
		return nil, nil, err
	}
	var unpinned []rollout.Target
	for _, t := range ts {
		if t.HostKey == nil && t.Addr != "" {
			unpinned = append(unpinned, t)
		}
	}
	probed, errs := probeAll(ctx, s.bot, unpinned, s.opts.ProbeTimeout)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	for i, t := range unpinned {
		if errs[i] != nil {
			warnings = append(warnings, fmt.Sprintf("%s: host key not learned, so its keys are encrypted to the admins only until an apply learns it (%v)", t.Name, errs[i]))
			continue
		}
		key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(probed[i].HostKey)))
		h := d.Fleet.Hosts[t.Name]
		if h.HostKey != "" {
			// Pinned apart from the age recipient, which nestbot does not
			// learn: an agenix identity need not be the SSH host key.
			rel, err := pinElsewhere(d, h, key)
			if err != nil {
				return written, warnings, err
			}
			written = append(written, rel)
			if _, ok := d.HostKeys[t.Name]; !ok {
				warnings = append(warnings, fmt.Sprintf("%s: its host key is pinned in %s, but it has no age recipient in %s, so its keys are encrypted to the admins only; put its agenix identity's public key there",
					t.Name, h.HostKey, path.Join(d.Fleet.PKI.Dir, "hosts", t.Name+".pub")))
			}
			continue
		}
		if err := certtree.PinHostKey(certtree.Dir(d.PKIDir()), t.Name, key); err != nil {
			return written, warnings, err
		}
		if d.HostKeys == nil {
			d.HostKeys = map[string]string{}
		}
		d.HostKeys[t.Name] = pki.NormalizeRecipient(key)
		d.Pins[t.Name] = d.HostKeys[t.Name]
		written = append(written, certtree.HostKeyPath(t.Name))
	}
	// Beside each pinned key, the node it was learned from: only that node
	// is the host from now on (nesttailnet.Bind), whatever others call
	// themselves. A host pinned before nestbot pinned nodes gets its node now.
	byNode := d.HostsByNode()
	node := map[string]string{}
	for _, n := range live.Tailnet.Nodes { // bound already: one node per host at most
		if host, ok := byNode[n.Name]; ok && n.ID != "" {
			node[host] = n.ID
		}
	}
	for _, t := range ts {
		id := node[t.Name]
		if d.HostKeys[t.Name] == "" || id == "" || d.Nodes[t.Name] != "" {
			continue
		}
		wrote, err := certtree.PinNode(certtree.Dir(d.PKIDir()), t.Name, id)
		if err != nil {
			return written, warnings, err
		}
		if d.Nodes == nil {
			d.Nodes = map[string]string{}
		}
		d.Nodes[t.Name] = id
		if wrote {
			written = append(written, certtree.NodePath(t.Name))
		}
	}
	return written, warnings, nil
}
