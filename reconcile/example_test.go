package reconcile

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateLiveExamples = flag.Bool("update-live-examples", false, "rewrite examples/ducksnest/live/*.json")

// exampleSnapshots are the live snapshots shipped with the example: the
// empty world, the converged fleet, and one with a certificate about to
// expire and a host one commit behind.
func exampleSnapshots(t *testing.T) map[string]*Live {
	d := loadExample(t)
	empty := &Live{FormatVersion: FormatVersion, ObservedAt: observedAt, Repo: Repo{Revision: revNew},
		Cloud:   Cloud{Region: "ap-northeast-2", AccountID: "111122223333", Images: []Image{nixosAMI}},
		Tailnet: Tailnet{Self: "nestbot"}}
	converged := convergedLive(t, d, revNew, observedAt)
	drifted := convergedLive(t, d, revNew, observedAt)
	api := drifted.PKI.Certs["ec2-controlplane/apiserver"]
	api.NotBefore, api.NotAfter = observedAt.Add(-355*24*time.Hour), observedAt.Add(10*24*time.Hour)
	drifted.PKI.Certs["ec2-controlplane/apiserver"] = api
	behind := drifted.Hosts["laptop-ultra"]
	behind.Revision = revOld
	drifted.Hosts["laptop-ultra"] = behind
	drifted.Repo.Changed = map[string][]string{revOld: {"infra/nix/hosts/laptop-ultra/configuration.nix"}}
	all := map[string]*Live{"empty": empty, "converged": converged, "drifted": drifted}
	for _, l := range all {
		l.Planes = Planes()
	}
	return all
}

func TestExampleSnapshotsAreCurrent(t *testing.T) {
	for name, l := range exampleSnapshots(t) {
		var buf bytes.Buffer
		if err := l.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("..", "examples", "ducksnest", "live", name+".json")
		if *updateLiveExamples {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("%s is stale: run go test ./reconcile -run ExampleSnapshots -update-live-examples", path)
		}
		// And it reads back to the same state.
		back, err := readLiveFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := back.Encode(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
			t.Errorf("%s does not round-trip (err %v)", path, err)
		}
	}
}

func TestExamplePlans(t *testing.T) {
	d := loadExample(t)
	snaps := exampleSnapshots(t)
	if p := mustDiff(t, d, snaps["converged"]); len(p.Steps) != 0 {
		t.Fatalf("converged: %v", addresses(p))
	}
	if got := addresses(mustDiff(t, d, snaps["drifted"])); !slices.Equal(got, []string{"renew pki.cert.ec2-controlplane/apiserver", "roll host.laptop-ultra"}) {
		t.Fatalf("drifted: %q", got)
	}
	if s := mustDiff(t, d, snaps["empty"]).Summary(); s.Create != 7 || s.Certs != 23 {
		t.Fatalf("empty: %+v", s)
	}
}

func TestReadLiveRejectsBadSnapshots(t *testing.T) {
	dir := t.TempDir()
	head := `{"format_version":"` + FormatVersion + `","observed_at":"2026-01-01T00:00:00Z"`
	cases := map[string]string{
		"unknown key":     head + `,"clouds":{}}`,
		"key in capitals": head + `,"Cloud":{}}`,
		"repeated key":    head + `,"cloud":{},"cloud":{}}`,
		"trailing data":   head + `}{}`,
		"wrong version":   `{"format_version":"9","observed_at":"2026-01-01T00:00:00Z"}`,
		"no time":         `{"format_version":"` + FormatVersion + `"}`,
		"not json":        `cloud: {}`,
	}
	// The snapshot the cases are built from is itself read.
	if _, err := DecodeLive("good.json", strings.NewReader(head+`,"cloud":{}}`)); err != nil {
		t.Fatal(err)
	}
	for name, body := range cases {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readLiveFile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeLive(f *testing.F) {
	for _, name := range []string{"empty", "drifted"} {
		data, err := os.ReadFile(filepath.Join("..", "examples", "ducksnest", "live", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"format_version":"1","observed_at":"2026-01-01T00:00:00Z","pki":{"certs":{"x":{"not_after":"bad"}}}}`))
	d := loadExample(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := DecodeLive("fuzz.json", bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever a snapshot holds, planning against it never panics.
		_, _ = Diff(d, l, Options{})
	})
}

// readLiveFile decodes the live snapshot file at path, as nestbot plan
// --live reads it.
func readLiveFile(path string) (*Live, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeLive(path, f)
}
