package tailnet_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/host"
	labtailnet "github.com/ducksnest/nestbot/lab/tailnet"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/tailnet"
)

// TestObserveRealTailnet joins the bot and three hosts (one a stray) to
// tailscale's own control server and checks what the plan makes of it.
func TestObserveRealTailnet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := &labtailnet.Lab{Tags: []string{"tag:nest", "tag:nestbot"}}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	bot, err := tailnet.Join(ctx, tailnet.Config{Hostname: "nestbot", Dir: t.TempDir(), InMemory: true, Ephemeral: true,
		AuthKey: lab.AuthKey(), ControlURL: lab.ControlURL(), Tags: []string{"tag:nestbot"}})
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	for _, name := range []string{"laptop-firebat", "laptop-ultra", "old-laptop"} {
		h, err := host.Boot(ctx, lab, host.Config{Name: name, Root: filepath.Join(t.TempDir(), name), Tags: []string{"tag:nest"}})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
	}
	if _, err := tailnet.WaitJoined(ctx, bot, "old-laptop"); err != nil {
		t.Fatal(err)
	}
	live, err := tailnet.Observe(ctx, bot)
	if err != nil {
		t.Fatal(err)
	}
	if live.Self != "nestbot" || len(live.Nodes) != 3 {
		t.Fatalf("observed %+v", live)
	}
	for _, n := range live.Nodes {
		if !slices.Contains(n.Tags, "tag:nest") || len(n.IPs) == 0 || !strings.HasPrefix(n.IPs[0], "100.") {
			t.Fatalf("node %+v", n)
		}
	}

	f, err := nest.Load("../../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := reconcile.Diff(reconcile.Desired{Fleet: f}, &reconcile.Live{ObservedAt: time.Now(), Planes: []reconcile.Plane{reconcile.PlaneTailnet}, Tailnet: live}, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.Steps {
		got = append(got, string(s.Action)+" "+s.Address.String())
	}
	want := []string{"drift tailnet.node.ec2-controlplane", "drift tailnet.node.old-laptop"}
	if !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}

	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if _, err := tailnet.WaitJoined(short, bot, "never-joins"); err == nil {
		t.Fatal("waited for a host that never joins, and it returned")
	}
}
