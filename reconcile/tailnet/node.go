package tailnet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"
)

// DefaultJoinTimeout bounds Join when its context has no deadline.
const DefaultJoinTimeout = 60 * time.Second

// Config describes a tsnet node to join to a tailnet.
type Config struct {
	// Hostname is the node's name on the tailnet (and its MagicDNS label).
	Hostname string

	// Dir is the node's state directory (tsnet.Server.Dir): its node key
	// and prefs live in Dir/tailscaled.state unless InMemory is set, and
	// Tailscale SSH keeps its host keys in Dir/ssh. Required: tsnet would
	// otherwise pick a directory under the user's config dir.
	Dir string

	// InMemory keeps the node's state in memory instead of Dir; tsnet
	// allows that only for Ephemeral nodes.
	InMemory bool

	// Ephemeral registers the node as ephemeral.
	Ephemeral bool

	// AuthKey is the key the node registers with. It is not used when Dir
	// already holds a registered node.
	AuthKey string

	// ControlURL is the coordination server.
	ControlURL string

	// Tags are the node's advertised tags (tsnet.Server.AdvertiseTags).
	Tags []string

	// Port is the node's WireGuard UDP port on 127.0.0.1 (tsnet.Server.Port);
	// zero picks a free one. If it is taken, the node picks another.
	Port uint16

	// Logf, if set, receives the node's backend logs (verbose). Nil
	// discards them.
	Logf logger.Logf
}

// Join starts a tsnet node against cfg.ControlURL and waits until it is
// running and connected to its home DERP region, so that peers can reach it
// at once. The wait is bounded by ctx, or by DefaultJoinTimeout if ctx has no
// deadline. On error the node is closed.
func Join(ctx context.Context, cfg Config) (*tsnet.Server, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("tailnet: join: no hostname")
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("tailnet: join %s: no state dir", cfg.Hostname)
	}
	if cfg.ControlURL == "" {
		return nil, fmt.Errorf("tailnet: join %s: no control URL", cfg.Hostname)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultJoinTimeout)
		defer cancel()
	}
	logf := cfg.Logf
	if logf == nil {
		logf = logger.Discard
	}
	s := &tsnet.Server{
		Hostname:      cfg.Hostname,
		Dir:           cfg.Dir,
		Ephemeral:     cfg.Ephemeral,
		AuthKey:       cfg.AuthKey,
		ControlURL:    cfg.ControlURL,
		AdvertiseTags: cfg.Tags,
		Port:          cfg.Port,
		Logf:          logf,
		UserLogf:      logf,
	}
	if cfg.InMemory {
		s.Store = new(mem.Store)
	}
	if _, err := s.Up(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("tailnet: join %s: %w", cfg.Hostname, err)
	}
	if err := waitHomeDERP(ctx, s); err != nil {
		s.Close()
		return nil, fmt.Errorf("tailnet: join %s: %w", cfg.Hostname, err)
	}
	return s, nil
}

// waitHomeDERP waits until s has picked a home DERP region and heard from
// it. Until then the DERP server drops peers' disco frames for s, and the
// first dial to s stalls (tsnet_test.go: waitForHomeDERPConnected).
func waitHomeDERP(ctx context.Context, s *tsnet.Server) error {
	sys := s.Sys()
	health, ms := sys.HealthTracker.Get(), sys.MagicSock.Get()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if r := ms.GetLastNetcheckReport(ctx); r != nil && r.PreferredDERP != 0 &&
			!health.GetDERPRegionReceivedTime(r.PreferredDERP).IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for home DERP: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
