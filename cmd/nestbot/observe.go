package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/crypto/ssh"
	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	"github.com/ducksnest/nestbot/reconcile/rollout"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

// cloudFlags are the flags of the verbs that reach AWS.
type cloudFlags struct {
	Endpoint string // --aws-endpoint; AWS_ENDPOINT_URL works too, through the SDK
}

// session is one observation of the live fleet, and the clients that made it.
type session struct {
	EC2  *awsec2.Client
	Bot  *tsnet.Server // nestbot's tailnet node, or nil
	Repo *repoFacts    // the git checkout holding nest.yaml, or nil
	Live *reconcile.Live
	// HostErrors says why a host could not be probed.
	HostErrors map[string]error
}

// Close leaves the tailnet.
func (s *session) Close() {
	if s.Bot != nil {
		s.Bot.Close()
	}
}

// observeLive reads what can be observed today: the cloud plane, when
// nest.yaml has an aws section. Planes not observed are not planned, and
// the plan says so.
func observeLive(ctx context.Context, d desired, cf cloudFlags, tf tailnetFlags, getenv func(string) string) (*session, error) {
	s := &session{Live: &reconcile.Live{FormatVersion: reconcile.FormatVersion, ObservedAt: time.Now().UTC()}}
	s.Live.Planes = []reconcile.Plane{}
	bot, err := joinTailnet(ctx, d, tf, getenv)
	if err != nil {
		return nil, err
	}
	if bot != nil {
		s.Bot = bot
		if s.Live.Tailnet, err = nesttailnet.Observe(ctx, bot); err != nil {
			s.Close()
			return nil, fmt.Errorf("observe the tailnet: %w", err)
		}
		s.Live.Planes = append(s.Live.Planes, reconcile.PlaneTailnet)
		s.Repo = openRepo(d)
		s.Live.Hosts, s.HostErrors = observeHosts(ctx, bot, d, s.Live)
		fillRepo(s.Repo, s.Live)
		s.Live.Planes = append(s.Live.Planes, reconcile.PlaneHosts)
	}
	if d.Fleet.PKI != nil {
		certs, err := observeCerts(ctx, d, s.Live, s.Bot)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Live.PKI.Certs = certs
		s.Live.Planes = append(s.Live.Planes, reconcile.PlanePKI)
	}
	if d.Fleet.AWS == nil {
		return s, nil
	}
	client, err := nestaws.NewClient(ctx, nestaws.ClientOptions{Region: d.Fleet.AWS.Region, Endpoint: cf.Endpoint})
	if err != nil {
		s.Close()
		return nil, err
	}
	obs := &nestaws.Observer{Client: client}
	cloud, err := obs.Observe(ctx, d.Fleet)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("observe the cloud: %w", err)
	}
	s.EC2, s.Live.Cloud = client, cloud
	s.Live.Planes = append(s.Live.Planes, reconcile.PlaneCloud)
	return s, nil
}

// observeCerts reads the certificate tree in the repository. A tree that
// does not exist yet holds no certificates; a file that cannot be read is
// an error naming it.
//
// With the tailnet joined, it also reads the certificate each host serves
// (a TLS handshake to its serving ports) and marks the certificates a host
// still serves an older version of: "not yet rolled".
func observeCerts(ctx context.Context, d desired, live *reconcile.Live, bot *tsnet.Server) (map[string]reconcile.Cert, error) {
	dir := d.pkiDir()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return map[string]reconcile.Cert{}, nil
	}
	observed, err := pki.Observe(dir, live.ObservedAt)
	if err != nil {
		return nil, fmt.Errorf("observe the certificates: %w", err)
	}
	notRolled := map[string][]string{} // certificate id → host:port still serving an older one
	if bot != nil {
		for _, n := range live.Tailnet.Nodes {
			if _, ok := d.Fleet.Hosts[n.Name]; !ok || len(n.IPs) == 0 {
				continue
			}
			served, _ := pki.ProbeServed(ctx, bot.Dial, n.IPs[0], d.Fleet.PKI.ServingPorts)
			for _, hp := range pki.NotRolled(observed, n.Name, served) {
				_, portStr, _ := strings.Cut(hp, ":")
				port, _ := strconv.Atoi(portStr)
				if leaf := pki.ServedLeaf(port); leaf != "" {
					id := n.Name + "/" + leaf
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
			NotRolled: notRolled[id]}
	}
	return certs, nil
}

// refresh returns a function that observes the cloud and the tailnet again,
// for steps that depend on what earlier steps of the same apply created.
func (s *session) refresh(d desired) func(context.Context) (*reconcile.Live, error) {
	return func(ctx context.Context) (*reconcile.Live, error) {
		l := *s.Live
		var err error
		if s.EC2 != nil {
			if l.Cloud, err = (&nestaws.Observer{Client: s.EC2}).Observe(ctx, d.Fleet); err != nil {
				return nil, fmt.Errorf("observe the cloud again: %w", err)
			}
		}
		if s.Bot != nil {
			if l.Tailnet, err = nesttailnet.Observe(ctx, s.Bot); err != nil {
				return nil, fmt.Errorf("observe the tailnet again: %w", err)
			}
		}
		return &l, nil
	}
}

// learnHostKeys probes the hosts that have no pinned key yet (a new
// instance that just joined), and pins what they present in
// <pki.dir>/hosts/<host>.pub. It returns the files written, relative to
// pki.dir. A pinned key is never replaced.
func (s *session) learnHostKeys(ctx context.Context, d desired, live *reconcile.Live) ([]string, error) {
	if s.Bot == nil || d.Fleet.PKI == nil {
		return nil, nil
	}
	ts, err := targets(d, live)
	if err != nil {
		return nil, err
	}
	var written []string
	for _, t := range ts {
		if t.HostKey != nil || t.Addr == "" {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := rollout.Probe(pctx, s.Bot, t)
		cancel()
		if err != nil {
			return written, fmt.Errorf("learn the host key of %s: %w", t.Name, err)
		}
		key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.HostKey)))
		if err := pki.PinHostKey(pki.Dir(d.pkiDir()), t.Name, key); err != nil {
			return written, err
		}
		d.HostKeys[t.Name] = pki.NormalizeRecipient(key)
		written = append(written, pki.HostKeyPath(t.Name))
	}
	return written, nil
}
