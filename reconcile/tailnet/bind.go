package tailnet

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ducksnest/nestbot/reconcile"
)

// A node's name is what it says of itself: any node may register, or
// rename itself, as any host. So a node stands for a host only by what
// nestbot controls — the fleet's tags (granted by the keys nestbot mints or
// the operator issues), and the node id recorded when the host first
// joined (pinned beside its host key) — never by its name alone.

// BindOptions say which nodes may stand for the fleet's hosts.
type BindOptions struct {
	// Hosts maps each desired host to the name its node has on the
	// tailnet.
	Hosts map[string]string
	// Tags are the fleet's tags (tailnet.tags): a node carrying none is
	// not a fleet node. Empty: every node may be.
	Tags []string
	// Pinned maps a host to the node id recorded for it: only that node is
	// the host, and it is no other host.
	Pinned map[string]string
}

// Bind keeps, of nodes, those that may stand for the fleet's hosts, and
// every node that is no host's at all (strays, other machines); a node
// named like a host is dropped, with a line saying why, when it carries no
// fleet tag, when another node is pinned for that host, when it is pinned
// for another host, or when more than one node could be the host (each is
// refused: which one is the host cannot be told). What is dropped is
// neither probed, given keys, nor rolled out to.
func Bind(nodes []reconcile.Node, opts BindOptions) (kept []reconcile.Node, refused []string) {
	host := map[string]string{} // tailnet name → host
	for h, name := range opts.Hosts {
		host[name] = h
	}
	pinnedTo := map[string]string{} // node id → host
	for h, id := range opts.Pinned {
		if id != "" {
			pinnedTo[id] = h
		}
	}
	candidates := map[string][]int{} // host → the nodes (indexes) that may be it
	keep := make([]bool, len(nodes))
	for i, n := range nodes {
		h, named := host[label(n)]
		if !named {
			keep[i] = true
			continue
		}
		switch owner, pinned := pinnedTo[n.ID]; {
		case len(opts.Tags) > 0 && !slices.ContainsFunc(n.Tags, func(t string) bool { return slices.Contains(opts.Tags, t) }):
			refused = append(refused, fmt.Sprintf("tailnet: a node named %s (%s) carries none of the fleet's tags %s: it is not taken for host %s", label(n), n.ID, strings.Join(opts.Tags, ", "), h))
		case opts.Pinned[h] != "" && n.ID != opts.Pinned[h]:
			refused = append(refused, fmt.Sprintf("tailnet: a node named %s (%s) is not the node pinned for host %s (%s): it is not taken for the host; if the host was reinstalled, delete its pinned .node file", label(n), n.ID, h, opts.Pinned[h]))
		case pinned && owner != h:
			refused = append(refused, fmt.Sprintf("tailnet: the node pinned for host %s (%s) now calls itself %s: it is not taken for host %s", owner, n.ID, label(n), h))
		default:
			candidates[h] = append(candidates[h], i)
		}
	}
	for _, h := range slices.Sorted(maps.Keys(candidates)) {
		is := candidates[h]
		if len(is) == 1 {
			keep[is[0]] = true
			continue
		}
		ids := make([]string, len(is))
		for k, i := range is {
			ids[k] = nodes[i].ID
		}
		refused = append(refused, fmt.Sprintf("tailnet: %d nodes are named %s (%s): none is taken for host %s until one is removed from the tailnet",
			len(is), label(nodes[is[0]]), strings.Join(ids, ", "), h))
	}
	for i, n := range nodes {
		if keep[i] {
			kept = append(kept, n)
		}
	}
	return kept, refused
}

// label is a node's name as the plan matches it: its host name, or the
// first label of its MagicDNS name.
func label(n reconcile.Node) string {
	if n.Name != "" {
		return n.Name
	}
	l, _, _ := strings.Cut(n.DNSName, ".")
	return l
}
