package s3_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/pki/certtree"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store/s3"
)

const example = "../../examples/ducksnest"

// A plan saved from the example fleet (as `nestbot plan --save-plan` saves
// one) is put to S3, read back by another replica, and checked as
// `nestbot apply --plan` checks it: accepted against the live state it was
// made from, refused once the live state has changed.
func TestSavedPlanRoundTripsAndIsRefusedAfterLiveChanged(t *testing.T) {
	l := newLab(t)
	bucket := l.bucket(t)
	ctx := context.Background()

	desiredDigest, desired := loadDesired(t)
	live := readLive(t, "drifted")
	plan, err := reconcile.Diff(desired, live, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Steps) == 0 {
		t.Fatal("the plan against the drifted snapshot has no steps: nothing would be checked")
	}
	var buf bytes.Buffer
	saved := &reconcile.SavedPlan{Plan: plan, DesiredDigest: desiredDigest, LiveDigest: reconcile.DigestLive(live)}
	if err := saved.Encode(&buf); err != nil {
		t.Fatal(err)
	}

	writer := l.open(t, s3.Options{Bucket: bucket, Prefix: "nestbot/"})
	if err := writer.PutPlan(ctx, "ducksnest/pr-12", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	reader := l.open(t, s3.Options{Bucket: bucket, Prefix: "nestbot/", Client: l.client(nil)})
	data, err := reader.GetPlan(ctx, "ducksnest/pr-12")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, buf.Bytes()) {
		t.Fatalf("the plan read back differs from the plan put:\n%s\nwant\n%s", data, buf.Bytes())
	}
	got, err := reconcile.DecodeSavedPlan("s3://"+bucket+"/nestbot/plans/ducksnest/pr-12.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Plan.Steps) != len(plan.Steps) {
		t.Errorf("the plan read back has %d steps, want %d", len(got.Plan.Steps), len(plan.Steps))
	}

	// The live state as it was, observed again later: accepted.
	if err := got.Check(desiredDigest, readLive(t, "drifted")); err != nil {
		t.Errorf("Check against the live state the plan was made from: %v", err)
	}
	// The live state after another apply converged the fleet: refused.
	err = got.Check(desiredDigest, readLive(t, "converged"))
	if err == nil || !strings.Contains(err.Error(), "the live state changed since the plan was saved") {
		t.Errorf("Check against a changed live state: %v, want a refusal", err)
	}
	// One host moved on by itself: refused too.
	moved := readLive(t, "drifted")
	for name, h := range moved.Hosts {
		h.Revision = "0000000000000000000000000000000000000000"
		moved.Hosts[name] = h
		break
	}
	if err := got.Check(desiredDigest, moved); err == nil {
		t.Error("Check after a host's revision changed: nil, want a refusal")
	}
}

// loadDesired reads the example fleet and digests it as the CLI does
// (nest.yaml's bytes, then each pinned host key in host order).
func loadDesired(t *testing.T) (string, reconcile.Desired) {
	t.Helper()
	path := filepath.Join(example, "nest.yaml")
	f, err := nest.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for h := range f.Hosts {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	keys, err := certtree.ReadHostKeys(filepath.Join(example, filepath.FromSlash(f.PKI.Dir)), hosts)
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{src}
	for _, h := range hosts {
		parts = append(parts, []byte(h+" "+keys[h]))
	}
	return reconcile.DigestBytes(parts...), reconcile.Desired{Fleet: f, HostKeys: keys}
}

func readLive(t *testing.T, name string) *reconcile.Live {
	t.Helper()
	p := filepath.Join(example, "live", name+".json")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := reconcile.DecodeLive(p, f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
