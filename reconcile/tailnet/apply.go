package tailnet

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"tailscale.com/tsnet"

	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/ducksnest/nestbot/reconcile"
)

// Applier carries out the tailnet plane's steps, in order, stopping at the
// first failure:
//
//   - wait tailnet.node.<host>: wait, bounded by JoinTimeout, for the new
//     host to join (through Bot's status);
//   - delete tailnet.node.<name>: remove the stray through the Tailscale
//     API (RemoveStray: only devices carrying one of Tags), then wait,
//     bounded, until Bot no longer sees it.
//
// Use its Apply as the executor's reconcile.PlaneApplier.
type Applier struct {
	Bot *tsnet.Server
	// API removes strays; nil skips delete steps, saying why.
	API *API
	// Tags are the fleet's tags (tailnet.tags): a device is nestbot's to
	// remove only if it carries one.
	Tags []string
	// JoinTimeout bounds each wait step (tailnet.join_timeout); zero means
	// DefaultJoinTimeout.
	JoinTimeout time.Duration
	// GoneTimeout bounds the wait for a removed stray to leave Bot's view;
	// zero means 30s. Missing it is not a failure: the API said deleted.
	GoneTimeout time.Duration
	// Logger receives a record per wait, with the host it concerns; nil
	// discards.
	Logger *slog.Logger

	// A new host is the node that joins as it, never one that was there
	// before: the node ids Before lists (observed before the apply) and
	// Pinned holds (other hosts' nodes) are not it, nor a node registered
	// before Since (when control says when it registered). With Tags, it
	// carries one of them. When more than one node could be it, the wait
	// fails: which is the host cannot be told.
	Before map[string]bool
	Pinned map[string]string // host → node id
	Since  time.Time
	// Joined, if set, is told the node a new host joined as, to pin it.
	Joined func(host, id string)
}

// Apply applies steps and returns a result for each.
func (a *Applier) Apply(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
	var out []reconcile.StepResult
	var failed error
	for _, st := range steps {
		if failed != nil {
			out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "an earlier step failed"})
			continue
		}
		name := st.Address.Name
		if !st.Address.Is(reconcile.PlaneTailnet, reconcile.KindNode) || name == "" {
			failed = fmt.Errorf("%s: not a tailnet node address", st.Address)
			out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: failed.Error()})
			continue
		}
		var r reconcile.StepResult
		switch st.Action {
		case reconcile.ActionWait:
			r = a.wait(ctx, st, name)
		case reconcile.ActionDelete:
			r = a.removeStray(ctx, st, name)
		default:
			r = reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: fmt.Sprintf("nestbot does not %s tailnet nodes", st.Action)}
		}
		if r.Status == reconcile.StatusFailed {
			failed = fmt.Errorf("%s: %s", st.Address, r.Detail)
		}
		out = append(out, r)
	}
	return out, failed
}

func (a *Applier) log() *slog.Logger { return logs.Or(a.Logger) }

func (a *Applier) wait(ctx context.Context, st reconcile.Step, name string) reconcile.StepResult {
	if a.Bot == nil {
		return reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: "nestbot is not on the tailnet, so it cannot see the host join"}
	}
	d := a.JoinTimeout
	if d == 0 {
		d = DefaultJoinTimeout
	}
	a.log().Info(fmt.Sprintf("tailnet: waiting up to %s for %s to join", d, name), "host", name)
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := a.waitNew(wctx, name)
	if err != nil {
		return reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: err.Error()}
	}
	if a.Joined != nil {
		a.Joined(name, n.ID)
	}
	ip := ""
	if len(n.IPs) > 0 {
		ip = n.IPs[0].String()
	}
	return reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: "joined as " + ip}
}

func (a *Applier) removeStray(ctx context.Context, st reconcile.Step, name string) reconcile.StepResult {
	if a.API == nil {
		return reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped,
			Detail: "removing a node needs the Tailscale API: configure an OAuth client (tailnet.oauth, or TAILSCALE_OAUTH_CLIENT_ID and TAILSCALE_OAUTH_CLIENT_SECRET) or TAILSCALE_API_KEY"}
	}
	removed, err := a.API.RemoveStray(ctx, name, a.Tags)
	if err != nil {
		return reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: err.Error()}
	}
	if len(removed) == 0 {
		return reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: "already gone"}
	}
	var ids []string
	for _, d := range removed {
		ids = append(ids, d.ID)
	}
	detail := "deleted device " + strings.Join(ids, ", ")
	if a.Bot != nil {
		d := a.GoneTimeout
		if d == 0 {
			d = 30 * time.Second
		}
		gctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if err := WaitGone(gctx, a.Bot, name); err != nil {
			a.log().Warn(fmt.Sprintf("tailnet: %s was deleted but is still in nestbot's netmap", name), "host", name, "err", err)
			detail += "; still in nestbot's netmap"
		}
	}
	return reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: detail}
}

// waitNew waits, bounded by ctx, until exactly one node that may be the
// new host name is on the tailnet and online (see Applier.Before).
func (a *Applier) waitNew(ctx context.Context, name string) (Node, error) {
	pinned := map[string]bool{}
	for _, id := range a.Pinned {
		pinned[id] = true
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if nodes, err := Nodes(ctx, a.Bot); err == nil {
			var fresh []Node
			for _, n := range nodes {
				switch {
				case n.Name != name || !n.Online || n.Self, a.Before[n.ID], pinned[n.ID]:
				case len(a.Tags) > 0 && !slices.ContainsFunc(n.Tags, func(t string) bool { return slices.Contains(a.Tags, t) }):
				case !a.Since.IsZero() && !n.Created.IsZero() && n.Created.Before(a.Since):
				default:
					fresh = append(fresh, n)
				}
			}
			switch len(fresh) {
			case 0:
			case 1:
				return fresh[0], nil
			default:
				ids := make([]string, len(fresh))
				for i, n := range fresh {
					ids[i] = n.ID
				}
				return Node{}, fmt.Errorf("tailnet: %d new nodes named %s joined (%s): none is taken for the host; remove the one that is not its instance, and apply again",
					len(fresh), name, strings.Join(ids, ", "))
			}
		}
		select {
		case <-ctx.Done():
			return Node{}, fmt.Errorf("tailnet: %s did not join: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitGone waits until no peer named name is in s's status, polling,
// bounded by ctx.
func WaitGone(ctx context.Context, s *tsnet.Server, name string) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		nodes, err := Nodes(ctx, s)
		if err == nil && !hasPeer(nodes, name) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tailnet: %s is still on the tailnet: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func hasPeer(nodes []Node, name string) bool {
	for _, n := range nodes {
		if !n.Self && (n.Name == name || strings.HasPrefix(n.DNSName, name+".")) {
			return true
		}
	}
	return false
}
