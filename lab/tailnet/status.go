package tailnet

import (
	"context"

	"tailscale.com/tsnet"

	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

// Node is one node of the tailnet as a tsnet node sees it. In the lab,
// Online is always true (testcontrol tracks no presence; see the package doc).
type Node = nesttailnet.Node

// Nodes lists the tailnet's nodes as s sees them (s itself first, then its
// peers by name) — the same call the bot's own node makes.
func Nodes(ctx context.Context, s *tsnet.Server) ([]Node, error) {
	return nesttailnet.Nodes(ctx, s)
}
