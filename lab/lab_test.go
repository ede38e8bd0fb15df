package lab_test

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/internal/testkit"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/lab/host"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

var (
	updateHostKeys  = flag.Bool("update-host-keys", false, "rewrite the example's pinned host keys (the .pub files under the pki dir's hosts/)")
	updateFlakeLock = flag.Bool("update-flake-lock", false, "rewrite the example's flake.lock to lock the lab's stand-ins")
)

// TestExamplePinsTheLabHostKeys: the example repository pins the keys its
// hosts boot with in the lab, so the lab plays it without a key mismatch.
func TestExamplePinsTheLabHostKeys(t *testing.T) {
	f, err := nest.Load("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("../examples/ducksnest", f.PKI.Dir, "hosts")
	for name := range f.Hosts {
		pub, err := ssh.NewPublicKey(lab.HostKey(name).Public())
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " root@" + name + "\n"
		path := filepath.Join(dir, name+".pub")
		if *updateHostKeys {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || pki.NormalizeRecipient(string(got)) != pki.NormalizeRecipient(want) {
			t.Errorf("%s does not pin the lab's key for %s: run go test ./lab -run TestExamplePinsTheLabHostKeys -update-host-keys", path, name)
		}
	}
}

// TestInstanceBootsAHostThatJoins: RunInstances with nestbot's user-data
// boots a lab host that joins the tailnet with the key in it.
func TestInstanceBootsAHostThatJoins(t *testing.T) {
	f, err := nest.Load("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.Up(lab.Options{Fleet: f, PendingDelay: -1, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"laptop-firebat", "laptop-ultra"} {
		if _, ok := l.Host(name); !ok {
			t.Fatalf("on-prem host %s was not booted", name)
		}
	}
	env := strings.Join(l.Env(), "\n")
	for _, k := range []string{"AWS_ENDPOINT_URL=", "NESTBOT_TS_CONTROL_URL=http://127.0.0.1:", "TS_AUTHKEY=" + l.AuthKey, "TS_NO_LOGS_NO_SUPPORT=true"} {
		if !strings.Contains(env, k) {
			t.Fatalf("env lacks %s", k)
		}
	}

	// nestbot's own apply launches the instance, with its own user-data.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := nestaws.NewClientFromConfig(l.EC2.Config(l.Region), nestaws.ClientOptions{})
	cloud, err := (&nestaws.Observer{Client: client}).Observe(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	live := &reconcile.Live{ObservedAt: time.Now(), Planes: []reconcile.Plane{reconcile.PlaneCloud}, Cloud: cloud}
	plan, err := reconcile.Diff(reconcile.Desired{Fleet: f}, live, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &nestaws.Applier{Client: client, Fleet: f, Live: &live.Cloud, Poll: 20 * time.Millisecond,
		AuthKey: func(context.Context, string) (string, error) { return l.AuthKey, nil }}
	if _, err := a.Apply(ctx, plan.Steps); err != nil {
		t.Fatal(err)
	}
	bot, err := nesttailnet.Join(ctx, nesttailnet.Config{Hostname: "nestbot", Dir: t.TempDir(), InMemory: true, Ephemeral: true,
		AuthKey: l.AuthKey, ControlURL: l.Tailnet.ControlURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	if _, err := nesttailnet.WaitJoined(ctx, bot, "ec2-controlplane"); err != nil {
		t.Fatal(err)
	}
	// The node is on the tailnet once tailscale up is done; the lab lists
	// the host once its boot has returned, a moment later.
	var h *host.Host
	testkit.WaitForContext(t, ctx, "the lab to know the host that joined", func() bool {
		var ok bool
		h, ok = l.Host("ec2-controlplane")
		return ok
	})

	// Terminating the instance shuts its host down: it leaves the lab and
	// goes offline on the tailnet.
	ec2c := awsec2.NewFromConfig(l.EC2.Config(l.Region))
	ids := l.EC2.Instances()
	if len(ids) != 1 {
		t.Fatalf("%d instances", len(ids))
	}
	if _, err := ec2c.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{ids[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Host("ec2-controlplane"); ok {
		t.Error("the lab still lists the terminated instance's host")
	}
	// Its node stops, in the background.
	testkit.WaitForContext(t, ctx, "the terminated instance's host to leave the tailnet", func() bool { return !h.Up() })
	if _, ok := l.Host("laptop-ultra"); !ok {
		t.Error("an on-prem host went down with the instance")
	}
}

// TestExampleFlakeLocksTheStandIns: the example's flake.lock locks its
// nixpkgs and agenix inputs at the lab's stand-ins, so its hosts build it
// offline, as a real host builds the real lock.
func TestExampleFlakeLocksTheStandIns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, inputs, err := host.StoreDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := host.FlakeLock(inputs, "nixpkgs", "agenix")
	path := "../examples/ducksnest/infra/nix/flake.lock"
	if *updateFlakeLock {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Errorf("%s does not lock the lab's stand-ins (%v): run go test ./lab -run TestExampleFlakeLocksTheStandIns -update-flake-lock\nwant:\n%s", path, err, want)
	}
}

// TestExampleHostChangesAlone: a change to one host's configuration, or a
// certificate issued for another host, changes that host's toplevel only,
// as nix evaluates the example with the lab's stand-ins. (The stand-in
// agenix once named the key files by the flake's source path, so every
// commit changed every host's system and every rollout rolled them all.)
func TestExampleHostChangesAlone(t *testing.T) {
	fixtures.Require(t, "nix")
	fixtures.Require(t, "git")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := host.StoreDir(ctx); err != nil { // the stand-ins, in this machine's store too
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS("../examples/ducksnest")); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v: %s", args[0], err, out)
		}
	}
	toplevels := func() map[string]string {
		t.Helper()
		git("add", "-A")
		git("commit", "-qm", "change")
		out, err := exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command flakes", "eval", "--json",
			"git+file://"+repo+"?dir=infra/nix#nixosConfigurations", "--apply",
			"cs: builtins.mapAttrs (_: c: c.config.system.build.toplevel.outPath) cs").Output()
		if err != nil {
			t.Fatalf("nix eval: %v: %s", err, out)
		}
		var tops map[string]string
		if err := json.Unmarshal(out, &tops); err != nil {
			t.Fatal(err)
		}
		return tops
	}
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	// Every host serves its certificates, so that agenix has keys to name.
	for _, h := range []string{"ec2-controlplane", "laptop-firebat", "laptop-ultra"} {
		for _, stem := range []string{"kubernetes-kubelet-serving", "kubernetes-apiserver", "etcd-server"} {
			write("infra/nix/secrets/certs/derived/"+h+"/"+stem+".crt", "cert of "+h+"\n")
			write("infra/nix/secrets/certs/derived/"+h+"/"+stem+".key.age", "key of "+h+"\n")
		}
	}
	before := toplevels()
	ultra := filepath.Join(repo, "infra/nix/hosts/laptop-ultra/configuration.nix")
	conf, err := os.ReadFile(ultra)
	if err != nil {
		t.Fatal(err)
	}
	write("infra/nix/hosts/laptop-ultra/configuration.nix", strings.Replace(string(conf), "{ ... }:\n{\n", "{ ... }:\n{\n  environment.etc.\"motd\".text = \"quack\";\n", 1))
	write("infra/nix/secrets/certs/derived/laptop-firebat/kubernetes-kubelet-serving.crt", "renewed cert of laptop-firebat\n")
	after := toplevels()
	for h, want := range map[string]bool{"ec2-controlplane": false, "laptop-firebat": true, "laptop-ultra": true} {
		if changed := before[h] != after[h]; changed != want {
			t.Errorf("%s: toplevel changed %v, want %v (%s → %s)", h, changed, want, before[h], after[h])
		}
	}
}
