package reconcile

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// nodesByName indexes live tailnet nodes by the name of the host they are:
// the host whose tailnet name (hosts.<name>.tailnet_name, by default its
// name) is the node name, or the first label of its MagicDNS name. A node
// that is no host's keeps its own name.
func (p *planner) nodesByName() map[string]Node {
	if p.nodes != nil {
		return p.nodes
	}
	host := map[string]string{}
	for name, h := range p.f.Hosts {
		host[h.TailnetNode()] = name
	}
	m := make(map[string]Node, len(p.live.Tailnet.Nodes))
	for _, n := range p.live.Tailnet.Nodes {
		name := n.Name
		if name == "" {
			name, _, _ = strings.Cut(n.DNSName, ".")
		}
		if h, ok := host[name]; ok {
			name = h
		}
		m[name] = n
	}
	p.nodes = m
	return m
}

func (p *planner) tailnet() {
	nodes := p.nodesByName()
	t := &p.f.Tailnet
	for _, name := range p.hostNames() {
		h := p.f.Hosts[name]
		addr := TailnetAddress(name)
		n, ok := nodes[name]
		switch {
		case p.created[name]:
			p.add(Step{Plane: PlaneTailnet, Action: ActionWait, Address: addr,
				Reason: fmt.Sprintf("wait up to %s for the new instance to join the tailnet", t.JoinTimeout)})
			continue
		case !ok && h.AWS != nil && p.managedInstance(name) != nil:
			p.add(Step{Plane: PlaneTailnet, Action: ActionDrift, Address: addr,
				Reason: "the instance exists but is not on the tailnet; check its user-data and auth key"})
			continue
		case !ok:
			p.add(Step{Plane: PlaneTailnet, Action: ActionDrift, Address: addr,
				Reason: "not on the tailnet; it will be skipped until it joins"})
			continue
		case !n.Online:
			reason := "offline"
			if !n.LastSeen.IsZero() && !p.live.ObservedAt.IsZero() {
				reason = "offline, last seen " + ago(p.live.ObservedAt.Sub(n.LastSeen)) + " ago"
			}
			p.add(Step{Plane: PlaneTailnet, Action: ActionDrift, Address: addr, Reason: reason + "; it will be skipped until it is back"})
		}
		if missing := missingTags(t.Tags, n.Tags); len(missing) > 0 {
			p.add(Step{Plane: PlaneTailnet, Action: ActionDrift, Address: addr,
				Reason:  "missing tags " + strings.Join(missing, ", ") + "; re-authenticate the node with them",
				Changes: []Change{{Attr: "tags", Before: strings.Join(n.Tags, ", "), After: strings.Join(t.Tags, ", ")}}})
		}
	}
	// Strays: nodes carrying a fleet tag that nest.yaml does not name.
	var strays []Node
	for name, n := range nodes {
		if _, desired := p.f.Hosts[name]; desired || name == p.live.Tailnet.Self || len(t.Tags) == 0 {
			continue
		}
		if len(missingTags(t.Tags, n.Tags)) < len(t.Tags) {
			strays = append(strays, n)
		}
	}
	sort.Slice(strays, func(i, j int) bool { return strays[i].Name < strays[j].Name })
	deleted := p.deletedInstances()
	for _, n := range strays {
		s := Step{Plane: PlaneTailnet, Action: ActionDrift, Address: TailnetAddress(n.Name),
			Reason: "stray: tagged " + strings.Join(n.Tags, ", ") + " but not in nest.yaml"}
		switch {
		case deleted[n.Name]:
			// nestbot launched it, and removes it: its node goes with it.
			s.Action = ActionDelete
			s.Reason = "its instance " + CloudAddress(KindInstance, n.Name).String() + " is deleted by this plan; its node goes with it"
		case t.RemoveStrays:
			s.Action = ActionDelete
			s.Reason += "; removed from the tailnet (tailnet.remove_strays)"
		}
		p.add(s)
	}
}

// deletedInstances are the hosts whose instance this plan deletes.
func (p *planner) deletedInstances() map[string]bool {
	out := map[string]bool{}
	for _, st := range p.plan.Steps {
		if st.Address.Is(PlaneCloud, KindInstance) && st.Action == ActionDelete {
			out[st.Address.Name] = true
		}
	}
	return out
}

func missingTags(want, have []string) []string {
	var out []string
	for _, t := range want {
		if !slices.Contains(have, t) {
			out = append(out, t)
		}
	}
	return out
}

// ago spells a duration the way a person says it: 3d, 5h, 12m.
func ago(d interface{ Hours() float64 }) string {
	h := d.Hours()
	switch {
	case h >= 48:
		return fmt.Sprintf("%dd", int(h/24))
	case h >= 1:
		return fmt.Sprintf("%dh", int(h))
	default:
		return fmt.Sprintf("%dm", int(h*60))
	}
}
