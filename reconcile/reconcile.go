package reconcile

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
)

// Desired is the state the repository describes at one commit.
type Desired struct {
	Fleet *nest.Fleet
	// HostKeys maps a host to its pinned SSH ed25519 public key, read from
	// <pki.dir>/hosts/<host>.pub.
	HostKeys map[string]string
}

// Options tune a plan.
type Options struct {
	// Revision overrides live.Repo.Revision as the commit hosts roll to.
	Revision string
}

// Tag keys that mark what nestbot owns. The tags are the state: nestbot keeps
// no state file, and never touches a resource without them except to adopt it.
const (
	TagFleet    = "nest:name"
	TagManaged  = "nest:managed"
	TagResource = "nest:resource"
	TagHost     = "nest:host"
	TagUserData = "nest:user-data" // hash of the user-data template, never the data
)

// Diff computes the steps that make live match desired. It is pure and
// deterministic: the same inputs give the same plan. An error says what
// could not be planned (an AMI that matches nothing, an adoption target
// that does not exist); every such problem is reported.
func Diff(d Desired, live *Live, o Options) (*Plan, error) {
	if d.Fleet == nil {
		return nil, errors.New("plan: no desired state")
	}
	if live == nil {
		live = &Live{}
	}
	p := &planner{d: d, f: d.Fleet, live: live, plan: &Plan{
		Fleet:      d.Fleet.Name,
		Revision:   cmp.Or(o.Revision, live.Repo.Revision),
		ObservedAt: live.ObservedAt,
	}}
	p.created = map[string]bool{}
	for _, plane := range Planes() {
		if !live.Observed(plane) {
			p.note("the %s plane was not observed, so it was not planned", plane)
			continue
		}
		switch plane {
		case PlaneCloud:
			p.cloud()
		case PlaneTailnet:
			p.tailnet()
		case PlanePKI:
			p.pki()
		case PlaneHosts:
			p.hosts()
		}
	}
	if len(p.errs) > 0 {
		return p.plan, errors.Join(p.errs...)
	}
	return p.plan, nil
}

// planner holds the state of one Plan call.
type planner struct {
	d    Desired
	f    *nest.Fleet
	live *Live
	plan *Plan
	errs []error
	// created lists hosts whose instance this plan creates or replaces.
	created map[string]bool
	names   []string // hostNames, sorted once
	// liveRes and liveByAddr are the observed cloud, built once per plan.
	liveRes    []resource
	liveByAddr map[string][]resource
	nodes      map[string]Node      // live tailnet nodes by host name
	instances  map[string]*Instance // managedInstance's index: instance address → instance
	adopting   map[string]Address   // live id → address of resources being adopted
	adoptees   *adoptIndex          // liveList by what adopt blocks name, built on first use
	// unresolved holds the cloud addresses whose live resource could not be
	// told (an error says why); nothing is compared against them.
	unresolved map[Address]bool
}

func (p *planner) add(s Step) { p.plan.Steps = append(p.plan.Steps, s) }

func (p *planner) errorf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

func (p *planner) warn(format string, args ...any) {
	p.plan.Warnings = append(p.plan.Warnings, fmt.Sprintf(format, args...))
}

func (p *planner) note(format string, args ...any) {
	p.plan.Notes = append(p.plan.Notes, fmt.Sprintf(format, args...))
}

// hostNames returns the desired hosts sorted by name, sorted once per plan.
// Callers only read it.
func (p *planner) hostNames() []string {
	if p.names == nil {
		p.names = slices.Sorted(maps.Keys(p.f.Hosts))
	}
	return p.names
}

// hostFacts gathers what live knows of each host's addresses, for its certificates.
func (p *planner) hostFacts() map[string]pki.HostFacts {
	facts := map[string]pki.HostFacts{}
	nodes := p.nodesByName()
	for _, name := range p.hostNames() {
		h := p.f.Hosts[name]
		var fact pki.HostFacts
		fact.PrivateIPs = h.AWS == nil
		if h.AWS != nil {
			if inst := p.managedInstance(name); inst != nil && inst.PrivateIP != "" && !p.created[name] {
				if a, err := netip.ParseAddr(inst.PrivateIP); err == nil {
					fact.IPs = append(fact.IPs, a)
					fact.PrivateIPs = true
				}
			}
		}
		if n, ok := nodes[name]; ok && !p.created[name] {
			fact.OnTailnet = true
			for _, ip := range n.IPs {
				if a, err := netip.ParseAddr(ip); err == nil {
					fact.IPs = append(fact.IPs, a)
				}
			}
			fact.DNSName = strings.TrimSuffix(n.DNSName, ".")
		}
		if fact.DNSName == "" && p.f.Tailnet.Domain != "" {
			fact.DNSName = name + "." + p.f.Tailnet.Domain
		}
		facts[name] = fact
	}
	return facts
}

// HostFacts is what live says of each desired host's addresses, as the plan
// uses it for certificate SANs.
func HostFacts(d Desired, live *Live) map[string]pki.HostFacts {
	p := &planner{d: d, f: d.Fleet, live: live, created: map[string]bool{}}
	return p.hostFacts()
}
