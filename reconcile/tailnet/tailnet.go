// Package tailnet is nestbot's side of the tailnet: its own tsnet node
// (ephemeral, tagged, state in a directory or in memory), the live nodes as
// that node's status reports them, and a bounded wait for a new host to
// join. Hosts are reached only through this node.
//
// Through the Tailscale API v2 (API, with an OAuth client or an API access
// token) it mints a one-off auth key per new host for its user-data, lists
// devices, and removes strays: devices carrying a fleet tag that nest.yaml
// does not name. Applier carries out the tailnet plane of a plan: the join
// waits and the stray removals.
package tailnet

import (
	"context"
	"fmt"
	"time"

	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/reconcile"
)

// Observe reads the tailnet as s sees it, in the plan's shape.
func Observe(ctx context.Context, s *tsnet.Server) (reconcile.Tailnet, error) {
	nodes, err := Nodes(ctx, s)
	if err != nil {
		return reconcile.Tailnet{}, err
	}
	var t reconcile.Tailnet
	for _, n := range nodes {
		if n.Self {
			t.Self = n.Name
		}
	}
	for _, n := range nodes {
		if n.Self || n.Name == t.Self {
			continue // nestbot itself, or an earlier ephemeral node of it not yet gone
		}
		ln := reconcile.Node{ID: n.ID, Name: n.Name, DNSName: n.DNSName, Tags: n.Tags, Online: n.Online, LastSeen: n.LastSeen}
		for _, ip := range n.IPs {
			ln.IPs = append(ln.IPs, ip.String())
		}
		t.Nodes = append(t.Nodes, ln)
	}
	return t, nil
}

// WaitJoined waits until a node named name is on the tailnet and online,
// polling s's status, bounded by ctx.
func WaitJoined(ctx context.Context, s *tsnet.Server, name string) (Node, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		nodes, err := Nodes(ctx, s)
		if err == nil {
			for _, n := range nodes {
				if n.Name == name && n.Online && !n.Self {
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return Node{}, fmt.Errorf("tailnet: %s did not join: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}
