// Package lab starts, in one process and only on loopback, stand-ins for
// everything nestbot talks to — the EC2 endpoint, a real tailnet (tailscale's
// own control server, DERP and STUN), and simulated NixOS hosts — so that
// tests and `nestlab up` drive nestbot exactly as the real world would:
// through endpoints and credentials. An instance created through the EC2
// endpoint boots a lab host that joins the tailnet with the auth key from
// its user-data.
package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/lab/tailnet"
	"github.com/ducksnest/nestbot/nest"
)

// Options configure a lab.
type Options struct {
	// Fleet, when set, seeds the EC2 endpoint with what its nest.yaml
	// expects to exist already: the images it names and its instance profiles.
	Fleet *nest.Fleet
	// Logger receives what the lab's EC2, GitHub and hosts log; nil
	// discards.
	Logger *slog.Logger
	// PendingDelay is how long a new instance stays pending (default 2s).
	PendingDelay time.Duration
	// GitHub, when set, starts the lab's GitHub with the fleet's repository.
	GitHub *GitHubOptions
}

// Lab is a running lab.
type Lab struct {
	EC2     *ec2.Server
	Tailnet *tailnet.Lab
	Region  string
	AuthKey string  // the tailnet's auth key, for new hosts' user-data and the bot
	GitHub  *GitHub // the lab's GitHub, when Options.GitHub asked for it

	dir    string // the hosts' roots
	pkiDir string // the fleet's pki.dir relative to its flake, for hosts to serve their certificates
	logger *slog.Logger
	logf   func(format string, args ...any) // logger's, for the lab's own sentences

	mu    sync.Mutex
	hosts map[string]*host.Host // booted from EC2 instances or by Boot
	// instances are the hosts EC2 instances booted, by instance id; a
	// terminated instance's id maps to nil.
	instances map[string]*host.Host
	wg        sync.WaitGroup
}

// Up starts the lab.
func Up(o Options) (*Lab, error) {
	delay := o.PendingDelay
	if delay == 0 {
		delay = 2 * time.Second
	}
	logf := logs.Printf(o.Logger)
	dir, err := os.MkdirTemp("", "nestbot-lab-")
	if err != nil {
		return nil, err
	}
	l := &Lab{Region: "ap-northeast-2", dir: dir, logger: o.Logger, logf: logf, hosts: map[string]*host.Host{}, instances: map[string]*host.Host{}}
	l.Tailnet = &tailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"}}
	if o.Fleet != nil && o.Fleet.Tailnet.Domain != "" {
		l.Tailnet.MagicDNSDomain = o.Fleet.Tailnet.Domain
	}
	if o.Fleet != nil && o.Fleet.PKI != nil {
		if rel, err := filepath.Rel(filepath.FromSlash(o.Fleet.Flake), filepath.FromSlash(o.Fleet.PKI.Dir)); err == nil {
			l.pkiDir = filepath.ToSlash(rel)
		}
	}
	if err := l.Tailnet.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: tailnet: %w", err)
	}
	l.AuthKey = l.Tailnet.AuthKey()
	l.EC2 = &ec2.Server{Logger: o.Logger, PendingDelay: delay, StoppingDelay: delay, ShuttingDownDelay: delay, OnRunInstance: l.bootInstance, OnTerminateInstance: l.haltInstance}
	if err := l.EC2.Start(); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.seed(o.Fleet); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.bootOnPrem(o.Fleet); err != nil {
		l.Close()
		return nil, err
	}
	if o.GitHub != nil {
		if err := l.startGitHub(o.GitHub); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab: github: %w", err)
		}
	}
	return l, nil
}

// bootOnPrem boots the fleet's hosts that are not EC2 instances: in the
// real world they exist already.
func (l *Lab) bootOnPrem(f *nest.Fleet) error {
	if f == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range slices.Sorted(maps.Keys(hostSet(f))) {
		if f.Hosts[name].AWS != nil {
			continue
		}
		if _, err := l.Boot(ctx, host.Config{Name: name, Tags: []string{"tag:nest"}}); err != nil {
			return fmt.Errorf("lab: boot %s: %w", name, err)
		}
	}
	return nil
}

func hostSet(f *nest.Fleet) map[string]bool {
	m := map[string]bool{}
	for name := range f.Hosts {
		m[name] = true
	}
	return m
}

// HostKey is the SSH host key a lab host named name boots with: derived
// from its name, so that a repository can pin lab hosts' keys ahead of
// time (the example does). It is a lab key, never a real host's.
func HostKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("nestbot lab host key: " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// bootInstance boots the lab host an EC2 instance stands for, as the NixOS
// AMI would: named by its user-data, joining the tailnet with the key in it.
func (l *Lab) bootInstance(in ec2.Instance) {
	name, ok := host.HostNameFromUserData(in.UserData)
	if !ok {
		l.EC2.BootFailed(in.ID, "its user-data sets no networking.hostName, so the lab cannot tell which host it is")
		return
	}
	key, ok := host.AuthKeyFromUserData(in.UserData)
	if !ok {
		l.EC2.BootFailed(in.ID, "its user-data ("+name+") holds no tailnet auth key, so it would never join")
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := l.Boot(ctx, host.Config{Name: name, AuthKey: key, Tags: []string{"tag:nest"}})
		if err != nil {
			l.EC2.BootFailed(in.ID, fmt.Sprintf("host %s did not boot: %v", name, err))
			return
		}
		l.mu.Lock()
		h0, terminated := l.instances[in.ID]
		if !terminated || h0 != nil {
			l.instances[in.ID] = h
		}
		l.mu.Unlock()
		if terminated && h0 == nil { // terminated while it booted
			l.halt(h)
		}
	}()
}

// haltInstance shuts down the host a terminated instance booted: it goes
// offline, as the machine would.
func (l *Lab) haltInstance(in ec2.Instance) {
	l.mu.Lock()
	h := l.instances[in.ID]
	l.instances[in.ID] = nil
	l.mu.Unlock()
	if h != nil {
		l.halt(h)
	}
}

// halt closes h, in the background, and forgets it unless another host has
// taken its name since (a replacement instance).
func (l *Lab) halt(h *host.Host) {
	l.mu.Lock()
	if l.hosts[h.Name()] == h {
		delete(l.hosts, h.Name())
	}
	l.mu.Unlock()
	l.logf("lab: host %s is shut down (its instance was terminated)", h.Name())
	l.wg.Go(func() { h.Close() })
}

// Boot starts a lab host (an on-prem machine, or an instance) on the tailnet.
func (l *Lab) Boot(ctx context.Context, cfg host.Config) (*host.Host, error) {
	if cfg.Root == "" {
		cfg.Root = filepath.Join(l.dir, cfg.Name)
	}
	if cfg.HostKey == nil {
		cfg.HostKey = HostKey(cfg.Name)
	}
	if cfg.PKIDir == "" {
		cfg.PKIDir = l.pkiDir
	}
	h, err := host.Boot(ctx, l.Tailnet, cfg)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.hosts[cfg.Name]; old != nil {
		old.Close()
	}
	l.hosts[cfg.Name] = h
	l.logf("lab: host %s is up on the tailnet", cfg.Name)
	return h, nil
}

// HostNames are the hosts the lab runs (on-prem and booted instances), sorted.
func (l *Lab) HostNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, 0, len(l.hosts))
	for n := range l.hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Host returns the lab host named name, if it is booted.
func (l *Lab) Host(name string) (*host.Host, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.hosts[name]
	return h, ok
}

// seed adds the images, instance profiles and key pairs a fleet refers
// to, as an account that already has them would.
func (l *Lab) seed(f *nest.Fleet) error {
	images := map[string]bool{"NixOS-25.05-updated-kernel-image": true}
	profiles := map[string]bool{"ducksnest-controlplane": true}
	keyPairs := map[string]bool{}
	if f != nil && f.AWS != nil {
		l.Region = f.AWS.Region
		for _, h := range f.Hosts {
			if h.AWS == nil {
				continue
			}
			if h.AWS.AMI.Name != "" {
				images[h.AWS.AMI.Name] = true
			}
			if h.AWS.InstanceProfile != "" {
				profiles[h.AWS.InstanceProfile] = true
			}
			if h.AWS.KeyName != "" {
				keyPairs[h.AWS.KeyName] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(images)) {
		if _, err := l.EC2.SeedImage(ec2.Image{Name: labImageName(name), OwnerID: nest.NixOSAMIOwner,
			CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Public: true}); err != nil {
			return fmt.Errorf("lab: seed image %s: %w", name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(profiles)) {
		l.EC2.SeedInstanceProfile(name)
	}
	for _, name := range slices.Sorted(maps.Keys(keyPairs)) {
		if err := l.EC2.SeedKeyPair(name); err != nil {
			return fmt.Errorf("lab: seed key pair %s: %w", name, err)
		}
	}
	return nil
}

// labImageName turns a name pattern into a name it matches.
func labImageName(pattern string) string {
	out := []rune{}
	for _, r := range pattern {
		switch r {
		case '*':
			out = append(out, []rune("lab")...)
		case '?':
			out = append(out, 'x')
		default:
			out = append(out, r)
		}
	}
	return string(out)
}

// Env is the environment that points every other nestbot verb (and the AWS
// CLI) at the lab, as KEY=VALUE lines. The TS_* knobs keep a tailscale node
// in another process on loopback, as the lab's own are (no log upload, no
// port mapping, no LAN addresses).
func (l *Lab) Env() []string {
	id, secret := l.EC2.Credentials()
	env := []string{
		"AWS_ENDPOINT_URL=" + l.EC2.URL(),
		"AWS_ACCESS_KEY_ID=" + id,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_REGION=" + l.Region,
		"AWS_DEFAULT_REGION=" + l.Region, // the AWS CLI v1 reads only this one
		"AWS_EC2_METADATA_DISABLED=true",
		"TS_AUTHKEY=" + l.AuthKey,
		"NESTBOT_TS_CONTROL_URL=" + l.Tailnet.ControlURL(),
		"NESTBOT_TS_AUTHKEY=" + l.AuthKey,
		"TS_NO_LOGS_NO_SUPPORT=true",
		"TS_DISABLE_PORTMAPPER=true",
		"TS_DEBUG_OMIT_LOCAL_ADDRS=true",
		// The lab is all on loopback: in a network namespace that has only
		// lo, tailscale would otherwise wait for a network that never comes.
		"TS_ASSUME_NETWORK_UP_FOR_TEST=true",
	}
	// The Tailscale API stand-in: new instances get an auth key minted
	// for each, as with a real OAuth client.
	clientID, clientSecret := l.Tailnet.OAuthClient()
	env = append(env,
		"TAILSCALE_BASE_URL="+l.Tailnet.APIURL(),
		"TAILSCALE_OAUTH_CLIENT_ID="+clientID,
		"TAILSCALE_OAUTH_CLIENT_SECRET="+clientSecret,
	)
	if l.GitHub != nil {
		env = append(env, l.GitHub.Env()...)
	}
	return env
}

// Close stops every component: hosts first, then EC2 and the tailnet.
func (l *Lab) Close() error {
	l.wg.Wait()
	l.mu.Lock()
	for _, h := range l.hosts {
		h.Close()
	}
	l.hosts = map[string]*host.Host{}
	l.mu.Unlock()
	var err error
	if l.GitHub != nil {
		if l.GitHub.control != nil {
			l.GitHub.control.Close()
		}
		l.GitHub.Close()
	}
	if l.EC2 != nil {
		err = l.EC2.Close()
	}
	if l.Tailnet != nil {
		l.Tailnet.Close()
	}
	os.RemoveAll(l.dir)
	return err
}
