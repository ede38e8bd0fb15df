package tailnet

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tsnet"
)

// Node is one node of the tailnet as a tsnet node sees it.
type Node struct {
	ID       string       // stable node id: the Tailscale API's device id (nodeId)
	Name     string       // hostname the node registered with
	DNSName  string       // MagicDNS name, without the trailing dot
	IPs      []netip.Addr // tailnet addresses (100.64.x.y and fd7a:115c:a1e0::…)
	Tags     []string     // ACL tags, e.g. "tag:nest"
	Created  time.Time    // when it registered with control
	Online   bool         // connected to control
	LastSeen time.Time    // last seen by control; zero when online
	Self     bool         // the node asking
}

// Nodes lists the tailnet's nodes as s sees them (s itself first, then its
// peers by name), from s's LocalClient status — the same call the bot's own
// node makes.
func Nodes(ctx context.Context, s *tsnet.Server) ([]Node, error) {
	lc, err := s.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("tailnet: status: %w", err)
	}
	st, err := lc.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("tailnet: status: %w", err)
	}
	var out []Node
	if st.Self != nil {
		n := nodeOf(st.Self)
		n.Self = true
		out = append(out, n)
	}
	var peers []Node
	for _, ps := range st.Peer {
		peers = append(peers, nodeOf(ps))
	}
	slices.SortFunc(peers, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	return append(out, peers...), nil
}

func nodeOf(ps *ipnstate.PeerStatus) Node {
	n := Node{
		ID:       string(ps.ID),
		Name:     ps.HostName,
		DNSName:  strings.TrimSuffix(ps.DNSName, "."),
		IPs:      slices.Clone(ps.TailscaleIPs),
		Created:  ps.Created,
		Online:   ps.Online,
		LastSeen: ps.LastSeen,
	}
	if ps.Tags != nil {
		n.Tags = ps.Tags.AsSlice()
	}
	return n
}
