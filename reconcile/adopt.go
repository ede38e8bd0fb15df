package reconcile

import (
	"errors"
)

// Found is what exists of one cloud resource nest.yaml describes: the
// resource nest.yaml can adopt, found by its adopt block, or by what makes
// it look the same (CIDR, Name, group name, the host's Name).
type Found struct {
	Address Address  // aws.vpc, aws.subnet.public-a, aws.instance.<host>, …
	Path    []string // the key path in nest.yaml of the mapping that holds adopt
	// ID is the resource to adopt; "" when none, or several, look the same.
	ID   string
	What string // the resource, for a person: its Name, CIDR, …
	// Owned is true when the resource is the fleet's already (by its
	// tags): it needs no adopt line.
	Owned bool
	// Others are the further resources that look the same, "id (what)",
	// when more than one does: nestbot picks none of them.
	Others []string
}

// Adoptable says, for each cloud resource nest.yaml describes, what exists
// that it can adopt, in plan order. It plans nothing; an error says what
// could not be told (an adopt block that finds nothing, an AMI that does
// not exist), and the rest is still returned.
func Adoptable(d Desired, live *Live) ([]Found, error) {
	if d.Fleet == nil || d.Fleet.AWS == nil {
		return nil, nil
	}
	p := &planner{d: d, f: d.Fleet, live: live, plan: &Plan{}, created: map[string]bool{}}
	desired := p.desiredNetwork(d.Fleet.AWS)
	for _, name := range p.hostNames() {
		h := p.f.Hosts[name]
		if h.AWS == nil {
			continue
		}
		// An instance is found by its Name or adopt block, whatever its
		// image: an AMI that cannot be resolved is the plan's error, not
		// adoption's.
		errs := len(p.errs)
		r, ok := p.desiredInstance(h)
		if !ok {
			p.errs = p.errs[:errs]
			r = resource{kind: KindInstance, addr: CloudAddress(KindInstance, name), host: name, adopt: h.AWS.Adopt}
		}
		desired = append(desired, r)
	}
	p.adoptionTargets(desired)
	var out []Found
	for _, want := range desired {
		f := Found{Address: want.addr, Path: KeyPath(want.addr)}
		claims := p.liveIndex()[want.kind+" "+want.addr.String()]
		switch {
		case len(claims) == 1:
			f.Owned, f.ID, f.What = true, claims[0].id, p.describe(claims[0])
		case len(claims) > 1:
			p.errorf("%s: %d resources carry its tags", want.addr, len(claims))
			continue
		case want.adopt.Takes():
			target, _, err := p.findAdoptee(want)
			if err != nil {
				p.errorf("%s: adopt: %v", want.addr, err)
				continue
			}
			f.ID, f.What = target.id, p.describe(target)
		case want.adopt != nil: // adopt: none
			continue
		default:
			found := p.lookalikes(want)
			switch len(found) {
			case 0:
				continue
			case 1:
				f.ID, f.What = found[0].id, p.describe(found[0])
			default:
				for _, r := range found {
					f.Others = append(f.Others, r.id+" ("+p.describe(r)+")")
				}
			}
		}
		out = append(out, f)
	}
	return out, errors.Join(p.errs...)
}

// KeyPath is where in nest.yaml the adopt block of a cloud address goes:
// aws.subnet.public-a is under aws.subnets.public-a, aws.instance.<host>
// under hosts.<host>.aws.
func KeyPath(addr Address) []string {
	switch addr.Kind {
	case KindSubnet:
		return []string{"aws", "subnets", addr.Name}
	case KindInstance:
		return []string{"hosts", addr.Name, "aws"}
	}
	return []string{"aws", addr.Kind}
}
