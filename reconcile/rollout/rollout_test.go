package rollout_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

// TestRollsOverBothLoginPaths rolls a commit to a host that lets nestbot
// in with Tailscale SSH (the tailnet policy's ssh rule, as root) and one
// that lets it in over OpenSSH as the deploy user, with its key and the
// sudo rules of nestbot's NixOS module — a host whose flake attribute,
// networking.hostName and tailnet name all differ from its name, and whose
// flake does not set configurationRevision. The first host's key is not
// pinned: first contact pins its ed25519 key. Each ends running and
// booting the new system, with the commit recorded on it.
func TestRollsOverBothLoginPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFleet(t, ctx,
		hostSpec{name: "web"},
		hostSpec{name: "firebat", attr: "laptop-firebat", hostName: "ducksnest-laptop-firebat", tailnetName: "ducks-firebat", login: host.LoginOpenSSH, noRevision: true})
	before := map[string]system{"web": f.system("web"), "firebat": f.system("firebat")}
	rev := f.change("a change to every host", `environment.etc."nest-test".text = "b";`)
	ev := &events{}
	r := f.rollout(rev, ev)
	r.Hosts[0].HostKey = nil // learn it
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatalf("rollout: %v%s", err, describe(res))
	}
	for _, name := range f.order {
		h, _ := res.Host(name)
		want := []rollout.State{rollout.StateQueued, rollout.StateShipping, rollout.StateBuilding, rollout.StateArmed, rollout.StateActivating,
			rollout.StateHealth, rollout.StateBooting, rollout.StateConfirmed}
		wantStates(t, ev, name, want...)
		if !h.OnTarget(rev) {
			t.Errorf("%s: not on the target: %+v", name, h)
		}
		now := f.system(name)
		if now.current == before[name].current || now.profile != now.current || now.booted != before[name].booted {
			t.Errorf("%s: before %+v, after %+v: want the new system current and the boot default, booted unchanged", name, before[name], now)
		}
		if got := f.sh(name, "cat /var/lib/nestbot/deployed"); got != rev+" "+now.current {
			t.Errorf("%s: recorded %q, want %q", name, got, rev+" "+now.current)
		}
		if got, want := f.bootDefault(name), "nixos-generation-"+strings.TrimSuffix(strings.TrimPrefix(now.generation, "system-"), "-link")+".conf"; got != want {
			t.Errorf("%s: boots %s, want %s", name, got, want)
		}
	}
	// The deploy user ran nestbot's root commands through sudo.
	if log := f.sh("firebat", "journalctl --no-pager -o cat _COMM=sudo | grep -c 'USER=root ; COMMAND=/run/current-system/sw/bin/systemd-run --unit=nest-' || true"); log == "0" || log == "" {
		t.Errorf("firebat: no sudo of systemd-run by the deploy user in its journal")
	}
	// The flake without configurationRevision: the host's nixos-version
	// does not say, and nestbot knows from its own record.
	var v map[string]string
	json.Unmarshal([]byte(f.sh("firebat", "nixos-version --json")), &v)
	if _, ok := v["configurationRevision"]; ok {
		t.Errorf("firebat's nixos-version says %v", v)
	}
	if h, _ := res.Host("firebat"); h.Now.Revision != rev || h.Now.ConfigurationRevision != "" {
		t.Errorf("firebat: %+v", h.Now)
	}
	json.Unmarshal([]byte(f.sh("web", "nixos-version --json")), &v)
	if v["configurationRevision"] != rev {
		t.Errorf("web's flake sets configurationRevision from self.rev: %v, want %s", v, rev)
	}
	// First contact pinned web's ed25519 key.
	if h, _ := res.Host("web"); h.HostKey != keyString(f.host("web").HostKey()) || !strings.HasPrefix(h.HostKey, ssh.KeyAlgoED25519) {
		t.Errorf("web: learned %q, want its ed25519 key %q", h.HostKey, keyString(f.host("web").HostKey()))
	}
	// A second run finds both on the commit.
	res, err = f.rollout(rev, nil).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.Hosts {
		if h.State != rollout.StateSkipped || !strings.Contains(h.Detail, "already on") {
			t.Errorf("%s again: %s (%s)", h.Name, h.State, h.Detail)
		}
	}
}
