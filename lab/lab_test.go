package lab_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"golang.org/x/crypto/ssh"

	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
	nesttailnet "github.com/ducksnest/nestbot/reconcile/tailnet"
)

var update = flag.Bool("update", false, "rewrite the example's pinned host keys")

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
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || pki.NormalizeRecipient(string(got)) != pki.NormalizeRecipient(want) {
			t.Errorf("%s does not pin the lab's key for %s: run go test ./lab -update", path, name)
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
	h, ok := l.Host("ec2-controlplane")
	if !ok {
		t.Fatal("joined, but the lab does not know the host")
	}

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
	for h.Up() { // its node stops, in the background
		select {
		case <-ctx.Done():
			t.Fatal("the terminated instance's host is still on the tailnet")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, ok := l.Host("laptop-ultra"); !ok {
		t.Error("an on-prem host went down with the instance")
	}
}
