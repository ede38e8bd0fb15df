package tailnet

import (
	"context"

	"tailscale.com/tsnet"

	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

// DefaultJoinTimeout bounds Join when its context has no deadline.
const DefaultJoinTimeout = nesttailnet.DefaultJoinTimeout

// NodeConfig describes a tsnet node to join to the lab: nestbot's own
// tailnet.Config, whose empty ControlURL and AuthKey Lab.Join fills in.
type NodeConfig = nesttailnet.Config

// Join starts a tsnet node against the lab and waits until it is running
// and connected to its home DERP region, so that peers can reach it at
// once. The wait is bounded by ctx, or by DefaultJoinTimeout if ctx has no
// deadline. On error the node is closed.
func (l *Lab) Join(ctx context.Context, cfg NodeConfig) (*tsnet.Server, error) {
	if cfg.ControlURL == "" {
		cfg.ControlURL = l.ControlURL()
	}
	if cfg.AuthKey == "" {
		cfg.AuthKey = l.AuthKey()
	}
	return Join(ctx, cfg)
}

// Join starts a tsnet node against cfg.ControlURL (nestbot's own join).
func Join(ctx context.Context, cfg NodeConfig) (*tsnet.Server, error) {
	return nesttailnet.Join(ctx, cfg)
}
