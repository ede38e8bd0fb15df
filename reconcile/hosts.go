package reconcile

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/ducksnest/nestbot/nest"
)

func (p *planner) hosts() {
	rev := p.plan.Revision
	if rev == "" {
		p.note("the target revision is unknown, so hosts were not compared; pass --revision or plan from a git checkout")
		return
	}
	if e := p.live.Repo.EvalError; e != "" && len(p.live.Repo.Toplevels) == 0 {
		p.note("hosts were compared by their path rules, not by the system nix evaluates: %s", strings.Join(strings.Fields(e), " "))
	}
	type due struct {
		name, reason string
	}
	from := func(host string) string {
		if run, ok := p.live.Hosts[host]; ok && run.Revision != "" {
			return short(run.Revision)
		}
		return ""
	}
	byRole := make([][]due, len(p.f.Rollout.Order))
	for _, name := range p.hostNames() {
		h := p.f.Hosts[name]
		reason, ok := p.hostDue(h, rev)
		if !ok {
			continue
		}
		group := rolloutGroup(p.f.Rollout.Order, h)
		if group < 0 {
			continue // validation guarantees a group; never roll a host out of order
		}
		byRole[group] = append(byRole[group], due{name, reason})
	}
	// One batch per role, in rollout.order: the rollout finishes a batch
	// before it starts the next, and within one keeps max_parallel hosts
	// switching, starting the next host as soon as one is done.
	batch := 0
	for g, hosts := range byRole {
		if len(hosts) > 0 {
			batch++
		}
		for _, d := range hosts {
			p.add(Step{Plane: PlaneHosts, Action: ActionRoll, Address: HostAddress(d.name), Batch: batch,
				Reason:  p.f.Rollout.Order[g] + ": " + d.reason,
				Changes: []Change{{Attr: "revision", Before: from(d.name), After: short(rev)}}})
		}
	}
}

// hostDue says whether host h must roll to revision rev, and why.
func (p *planner) hostDue(h *nest.Host, rev string) (string, bool) {
	if p.created[h.Name] {
		return "new instance", true
	}
	run, ok := p.live.Hosts[h.Name]
	if !ok || !run.Reachable || run.Revision == "" {
		if node, on := p.nodesByName()[h.Name]; !on || !node.Online {
			return "", false // the tailnet plane reports it; nothing can roll there now
		}
		return "revision unknown", true
	}
	boots := run.Profile == "" || run.Profile == run.System // snapshots from before Profile was observed
	if top, ok := p.live.Repo.Toplevels[h.Name]; ok && run.System != "" {
		switch {
		case top != run.System:
			return "its system changes (nix eval)", true
		case !boots:
			return "runs its system but does not boot it", true
		}
		return "", false
	}
	if run.Revision == rev {
		if !boots {
			return "runs " + short(rev) + " but does not boot it", true
		}
		return "", false
	}
	changed, known := p.live.Repo.Changed[run.Revision]
	if !known {
		return "changed paths unknown", true
	}
	var hits []string
	for _, c := range changed {
		if p.affects(h, c) {
			hits = append(hits, c)
		}
	}
	if len(hits) == 0 {
		return "", false
	}
	sort.Strings(hits)
	reason := "changed " + hits[0]
	if len(hits) > 1 {
		reason += fmt.Sprintf(" and %d more", len(hits)-1)
	}
	return reason, true
}

// affects reports whether a changed repository path (relative to
// nest.yaml's directory) affects host h: a path in pki.dir when it is one
// of the host's certificates or the CA bundle (another host's certificate
// does not), any other by the host's path rules.
func (p *planner) affects(h *nest.Host, repoPath string) bool {
	if k := p.f.PKI; k != nil {
		dir := path.Clean(k.Dir)
		if strings.HasPrefix(repoPath, dir+"/") {
			return strings.HasPrefix(repoPath, dir+"/derived/"+h.Name+"/") || strings.HasPrefix(repoPath, dir+"/ca/") || repoPath == dir+"/secrets.nix"
		}
	}
	for _, g := range h.Paths {
		if MatchGlob(g, repoPath) {
			return true
		}
	}
	return false
}

// rolloutGroup is the index in order of the earliest role h has.
func rolloutGroup(order []string, h *nest.Host) int {
	for i, role := range order {
		if h.HasRole(role) {
			return i
		}
	}
	return -1
}

// MatchGlob matches a slash path against a pattern whose segments are
// path.Match patterns or **, which matches any number of segments.
func MatchGlob(pattern, name string) bool {
	return matchSegments(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegments(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

func short(rev string) string {
	if len(rev) > 7 {
		return rev[:7]
	}
	return rev
}
