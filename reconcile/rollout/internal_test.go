package rollout

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

const rev = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func TestDecide(t *testing.T) {
	onA := Probed{Revision: "aaaa", Generation: 1}
	onB := Probed{Revision: rev, Generation: 2}
	running := unitState{Active: "active", Sub: "running", Result: "success"}
	exited := unitState{Active: "active", Sub: "exited", Result: "success"}
	failed := unitState{Active: "failed", Sub: "failed", Result: "exit-code", Status: 4}
	armed := unitState{Active: "active"}
	for _, tc := range []struct {
		name     string
		p        Probed
		ins      inspection
		inFlight bool
		want     action
		found    string
	}{
		{name: "due", p: onA, want: actRoll},
		{name: "already on the revision", p: onB, want: actSkip},
		{name: "confirmed by an earlier run", p: onB, inFlight: false, want: actSkip},
		{name: "switch still running", p: onA, ins: inspection{switchUnit: running, timer: armed}, inFlight: true, want: actWait, found: "still running"},
		{name: "switch running, journal lost", p: onA, ins: inspection{switchUnit: running, timer: armed}, want: actWait},
		{name: "switched, not confirmed", p: onB, ins: inspection{switchUnit: exited, timer: armed}, inFlight: true, want: actWait, found: "checking health"},
		{name: "switched, unit cleared, not confirmed", p: onB, ins: inspection{timer: armed}, inFlight: true, want: actHealth, found: "checking health"},
		{name: "switch failed, still armed", p: onB, ins: inspection{switchUnit: failed, timer: armed}, inFlight: true, want: actWait},
		{name: "rolled back by the dead-man", p: onA, ins: inspection{switchUnit: exited, rollbackUnit: exited}, inFlight: true, want: actRoll, found: "rolled back by its dead-man timer"},
		{name: "switch failed, then rolled back", p: onA, ins: inspection{switchUnit: failed, rollbackUnit: exited}, inFlight: true, want: actFail, found: "switch failed"},
		{name: "rollback running", p: onA, ins: inspection{rollbackUnit: running}, inFlight: true, want: actFail, found: "rolling back"},
		{name: "armed, never switched", p: onA, ins: inspection{timer: armed}, inFlight: true, want: actRoll, found: "nothing left running"},
		{name: "on the revision, nothing armed", p: onB, inFlight: true, want: actSkip, found: "done"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(rev, tc.p, tc.ins, tc.inFlight)
			if d.act != tc.want || !strings.Contains(d.found, tc.found) {
				t.Errorf("decide = %+v, want action %d, found containing %q", d, tc.want, tc.found)
			}
			if tc.inFlight && d.found == "" && tc.want != actRoll {
				t.Errorf("decide = %+v: says nothing of what it found", d)
			}
		})
	}
}

func TestWriteTar(t *testing.T) {
	src := fstest.MapFS{
		"infra/nix/flake.nix":      {Data: []byte("{ }\n"), Mode: 0o644},
		"infra/nix/.nest-revision": {Data: []byte("stale\n")},
		"infra/nix/run.sh":         {Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		"infra/nix/link":           {Data: []byte("flake.nix"), Mode: os.ModeSymlink | 0o777},
		"README.md":                {Data: []byte("hi\n")},
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, src, "infra/nix", rev); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		switch hdr.Typeflag {
		case tar.TypeDir:
			got[hdr.Name] = "dir"
		case tar.TypeSymlink:
			got[hdr.Name] = "-> " + hdr.Linkname
		default:
			got[hdr.Name] = string(body) + " " + os.FileMode(hdr.Mode).String()
		}
	}
	want := map[string]string{
		"README.md":                "hi\n -rw-r--r--",
		"infra/":                   "dir",
		"infra/nix/":               "dir",
		"infra/nix/flake.nix":      "{ }\n -rw-r--r--",
		"infra/nix/run.sh":         "#!/bin/sh\n -rwxr-xr-x",
		"infra/nix/link":           "-> flake.nix",
		"infra/nix/.nest-revision": rev + "\n -rw-r--r--",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tar holds %v, want %v", got, want)
	}
	if err := checkSource(src, "nix"); err == nil || !strings.Contains(err.Error(), "nix/flake.nix") {
		t.Errorf("checkSource of a wrong flake dir: %v", err)
	}
}

// The tar stream unpacks with the host's tar, as the ship script does.
func TestShipScriptUnpacks(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	home := t.TempDir()
	var buf bytes.Buffer
	if err := writeTar(&buf, fstest.MapFS{"f/flake.nix": {Data: []byte("{ }\n")}}, "f", rev); err != nil {
		t.Fatal(err)
	}
	n := newNames(rev, "f")
	for range 2 { // again over what the first left
		cmd := exec.Command("/bin/sh", "-c", n.shipScript())
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(home, ".nest/src", rev, "f/.nest-revision"))
	if err != nil || string(b) != rev+"\n" {
		t.Errorf(".nest-revision %q, %v", b, err)
	}
	if m, _ := filepath.Glob(filepath.Join(home, ".nest/src/*.part")); len(m) != 0 {
		t.Errorf("left behind %v", m)
	}
}

// Every command line the bot sends parses as POSIX shell.
func TestScriptsParse(t *testing.T) {
	n := newNames(rev, "infra/nix")
	ins := &inspection{}
	wait, _ := waitScript(n.switchSvc, &unitState{})
	scripts := map[string]string{
		"probe":        probeScript(n.inspectSections(ins)),
		"ship":         n.shipScript(),
		"arm":          n.armAndSwitchScript("web", 41, 2*time.Second, false, false),
		"arm, clear":   n.armAndSwitchScript("web", 41, 2*time.Second, true, false),
		"arm again":    n.armAndSwitchScript("web", 41, 2*time.Second, true, true),
		"wait":         wait,
		"confirm":      n.confirmScript(),
		"rollback-now": n.rollbackNowScript(41),
		"rollback":     n.rollbackScript(),
		"after":        n.afterRollbackScript(),
	}
	for name, s := range scripts {
		if out, err := exec.Command("/bin/sh", "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s\n%s", name, err, out, s)
		}
	}
	if arm := scripts["arm"]; !strings.Contains(arm, "--on-active=2000ms") || !strings.Contains(arm, `--flake "$HOME/.nest/src/`+rev+`/infra/nix#web"`) ||
		strings.Index(arm, "--on-active") > strings.Index(arm, "nixos-rebuild") || strings.Contains(arm, "reset-failed") {
		t.Errorf("arm, then switch:\n%s", arm)
	}
	if !strings.Contains(scripts["arm, clear"], "reset-failed") {
		t.Errorf("a first attempt after an earlier one must clear what it left:\n%s", scripts["arm, clear"])
	}
	if again := scripts["arm again"]; strings.Contains(again, "reset-failed") || strings.Count(again, "= inactive ]") != 2 {
		t.Errorf("a second attempt must clear nothing and start only what is missing:\n%s", again)
	}
	if n.switchSvc != "nest-switch-bbbbbbbbbbbb.service" || n.rollbackTimer() != "nest-rollback-bbbbbbbbbbbb.timer" {
		t.Errorf("units %s, %s", n.switchSvc, n.rollbackTimer())
	}
}

func TestParseProbe(t *testing.T) {
	out := "@version\n{\"nixosVersion\":\"25.05.1\",\"configurationRevision\":\"" + rev + "\"}\n\n@system\n/nix/store/abc-nixos-system-web-25.05.1\n@profile\nsystem-41-link\n" +
		"@switch\nActiveState=active\nSubState=exited\nResult=success\nExecMainStatus=0\n@end\n"
	secs := parseSections(out)
	p, err := parseProbe(secs)
	if err != nil || p.Revision != rev || p.System != "/nix/store/abc-nixos-system-web-25.05.1" || p.Generation != 41 || p.NixOSVersion != "25.05.1" {
		t.Errorf("probe %+v, %v", p, err)
	}
	if u := parseUnit(secs["switch"]); !u.succeeded() || u.running() || !u.loaded() {
		t.Errorf("unit %+v", u)
	}
	if _, err := parseProbe(parseSections("@version\n\n@profile\nsystem-1-link\n@end\n")); err == nil || !strings.Contains(err.Error(), "NixOS") {
		t.Errorf("not NixOS: %v", err)
	}
	if _, err := parseProbe(parseSections("@version\n{\"nixosVersion\":\"25.05\"}\n@profile\nsystem-1-link\n")); err == nil {
		t.Error("a cut-off probe parsed")
	}
}

func TestBatchesFromSteps(t *testing.T) {
	steps := []reconcile.Step{
		{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: "aws.instance.x"},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: "host.w2", Batch: 2},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: "host.cp", Batch: 1},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: "host.w1", Batch: 2},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionDrift, Address: "host.w3"},
	}
	got, err := BatchesFromSteps(steps)
	if err != nil || len(got) != 2 || !slices.Equal(got[0], []string{"cp"}) || !slices.Equal(got[1], []string{"w2", "w1"}) {
		t.Errorf("batches %v, %v", got, err)
	}
	if _, err := BatchesFromSteps([]reconcile.Step{{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: "host.x"}}); err == nil {
		t.Error("a roll step without a batch was accepted")
	}
}

// noDialer reaches nothing.
type noDialer struct{}

func (noDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errors.New("no network here")
}

func TestRunRefusesBadConfiguration(t *testing.T) {
	src := fstest.MapFS{"nix/flake.nix": {Data: []byte("{ }")}}
	good := func() Rollout {
		return Rollout{Dialer: noDialer{}, Hosts: []Target{{Name: "web"}}, Batches: [][]string{{"web"}}, Source: src, FlakeDir: "nix", Revision: rev}
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*Rollout)
	}{
		{"no dialer", "no dialer", func(r *Rollout) { r.Dialer = nil }},
		{"bad revision", "bad revision", func(r *Rollout) { r.Revision = "a b" }},
		{"flake outside", "bad flake directory", func(r *Rollout) { r.FlakeDir = "../x" }},
		{"no flake", "no nix/flake.nix", func(r *Rollout) { r.Source = fstest.MapFS{"x": {}} }},
		{"unknown host", "not among the hosts", func(r *Rollout) { r.Batches = [][]string{{"db"}} }},
		{"twice", "in two batches", func(r *Rollout) { r.Batches = [][]string{{"web"}, {"web"}} }},
		{"short confirm", "too short", func(r *Rollout) { r.ConfirmWithin = time.Millisecond }},
		{"empty health", "empty health", func(r *Rollout) { r.Health = []string{" "} }},
	} {
		r := good()
		tc.edit(&r)
		if _, err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestInterruptedReadsTheJournal(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "nestbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j := db.Journal()
	for _, e := range []store.Entry{
		{Host: "cp", Step: "armed", Generation: 7}, {Host: "cp", Step: "switching", Generation: 7}, {Host: "cp", Step: "health", Generation: 7}, {Host: "cp", Step: "confirmed", Generation: 7},
		{Host: "w1", Step: "armed", Generation: 3}, {Host: "w1", Step: "switching", Generation: 3},
		{Host: "w2", Step: "shipping"},
	} {
		e.Rollout = rev
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	in, err := Interrupted(j, rev)
	if err != nil || len(in) != 1 || in[0].Host != "w1" || in[0].Step != StateSwitching || in[0].Generation != 3 {
		t.Errorf("interrupted %+v, %v; want w1 switching, generation 3", in, err)
	}
}
