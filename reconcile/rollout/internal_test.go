package rollout

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/gitops/git"
	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/store"
)

const rev = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func TestDecide(t *testing.T) {
	const old, built = "/nix/store/aaa-nixos-system-web", "/nix/store/bbb-nixos-system-web"
	onA := Probed{Revision: "aaaa", System: old, Profile: old, Generation: 1}
	onB := Probed{Revision: rev, System: built, Profile: built, Generation: 2}
	activated := Probed{Revision: "aaaa", System: built, Profile: old, Generation: 1}
	running := unitState{Active: "active", Sub: "running", Result: "success"}
	armed := unitState{Active: "active", Sub: "waiting"}
	ok := map[string]string{stepBuild: resultOK, stepActivate: resultOK}
	firedAfterFailure := map[string]string{stepBuild: resultOK, stepActivate: "exit-code exited 4", stepRollback: resultOK}
	fired := map[string]string{stepBuild: resultOK, stepActivate: resultOK, stepRollback: resultOK}
	for _, tc := range []struct {
		name string
		p    Probed
		ins  inspection
		last State
		want action
		// found is what the decision says it found, for a host in flight.
		found string
	}{
		{name: "due", p: onA, want: actRoll},
		{name: "already on the revision", p: onB, want: actSkip},
		{name: "runs the revision but boots the old system", p: Probed{Revision: rev, System: built, Profile: old}, want: actRoll},
		{name: "build still running from an earlier run", p: onA, ins: inspection{build: running}, last: StateBuilding, want: actRoll},
		{name: "activation still running", p: onA, ins: inspection{activate: running, timer: armed, toplevel: built}, last: StateActivating, want: actWait, found: "still running"},
		{name: "activation running, journal lost", p: onA, ins: inspection{activate: running, timer: armed, toplevel: built}, want: actWait},
		{name: "activated, not confirmed", p: activated, ins: inspection{timer: armed, toplevel: built, results: ok}, last: StateActivating, want: actHealth, found: "checking health"},
		{name: "confirmed, not yet the boot default", p: activated, ins: inspection{toplevel: built, results: ok}, last: StateBooting, want: actBoot, found: "boot default"},
		{name: "becoming the boot default", p: activated, ins: inspection{boot: running, toplevel: built, results: ok}, last: StateBooting, want: actBoot, found: "boot default"},
		{name: "activated, timer stopped, not confirmed", p: activated, ins: inspection{toplevel: built, results: ok}, last: StateHealth, want: actHealth, found: "checking health"},
		{name: "rolled back by the dead-man", p: onA, ins: inspection{toplevel: built, results: fired}, last: StateHealth, want: actRoll, found: "rolled back by its dead-man timer"},
		// switch-to-configuration's reset-failed clears the failed unit:
		// only the recorded result says it failed.
		{name: "activation failed, then rolled back", p: onA, ins: inspection{toplevel: built, results: firedAfterFailure}, last: StateActivating, want: actFail, found: "activation failed"},
		{name: "rollback running", p: onA, ins: inspection{rollback: running}, last: StateHealth, want: actFail, found: "rolling back"},
		{name: "armed, never activated", p: onA, ins: inspection{timer: armed, toplevel: built}, last: StateArmed, want: actRoll, found: "nothing left running"},
		{name: "on the revision, nothing armed", p: onB, last: StateBooting, want: actSkip, found: "done"},
		{name: "rebooted inside the window: the old generation", p: onA, ins: inspection{toplevel: built, results: ok}, last: StateHealth, want: actRoll, found: "nothing left running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(rev, tc.p, tc.ins, tc.last)
			if d.act != tc.want || !strings.Contains(d.found, tc.found) {
				t.Errorf("decide = %+v, want action %d, found containing %q", d, tc.want, tc.found)
			}
			if tc.last.inFlight() && d.found == "" {
				t.Errorf("decide = %+v: says nothing of what it found", d)
			}
		})
	}
}

// testRepo makes a git repository with a flake in infra/nix whose
// nixosConfigurations.web toplevel is a derivation named after self.rev,
// and returns it and the commit.
func testRepo(t *testing.T) (*git.Repo, string) {
	t.Helper()
	fixtures.Require(t, "git")
	dir := t.TempDir()
	files := map[string]string{
		"nest.yaml": "version: 1\n",
		"infra/nix/flake.nix": `{
  outputs = { self }: {
    rev = self.rev or "none";
    nixosConfigurations.web.config.system.build.toplevel = derivation {
      name = "nixos-system-web-${self.shortRev or "dirty"}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "echo ${self.rev or "none"} > $out" ];
    };
    nixosConfigurations.db.config.system.build.toplevel = derivation {
      name = "nixos-system-db"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo db > $out" ];
    };
  };
}
`,
		"infra/nix/hosts/web.nix": "{ }\n",
		"scripts/check.sh":        "#!/bin/sh\nexit 0\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := git.Open(dir, git.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return repo, strings.TrimSpace(string(out))
}

// onHost makes a host-side script run in dir instead of /var/lib/nestbot.
func onHost(script, dir string) string { return strings.ReplaceAll(script, StateDir, dir) }

// TestShipScriptStoresTheCommit ships a commit into an empty state
// directory and again (idempotent), and checks with the real git and nix
// that the host's repository holds it, and that nix reads the flake there
// at the commit with self.rev the commit.
func TestShipScriptStoresTheCommit(t *testing.T) {
	repo, commit := testRepo(t)
	state := t.TempDir()
	n := newNames(commit, "infra/nix", "root")
	for i := range 2 {
		cmd := exec.Command("/bin/sh", "-c", onHost(n.shipScript(), state))
		cmd.Stdin = packReader(t, repo, commit)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ship %d: %v\n%s", i+1, err, out)
		}
	}
	src := filepath.Join(state, "src")
	if out, err := exec.Command("git", "-C", src, "rev-parse", "--verify", "refs/nest/"+commit).CombinedOutput(); err != nil {
		t.Fatalf("refs/nest/%s: %v %s", commit, err, out)
	}
	if out, err := exec.Command("git", "-C", src, "fsck", "--no-dangling").CombinedOutput(); err != nil {
		t.Fatalf("fsck: %v %s", err, out)
	}
	nix := &LocalNix{}
	if !nix.Available() {
		t.Skip("no nix here")
	}
	ref := n.flakeRef(src)
	out, err := nix.run(t.Context(), nil, "eval", "--raw", ref+"#rev")
	if err != nil || string(out) != commit {
		t.Fatalf("self.rev of %s = %q, %v; want the commit", ref, out, err)
	}
}

// packReader is the commit's pack, as the bot streams it.
func packReader(t *testing.T, repo *git.Repo, commit string) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		repo.WritePack(pw, commit)
		pw.Close()
	}()
	t.Cleanup(func() { pr.Close() })
	return pr
}

// TestLocalNixEvaluatesAndBuilds evaluates two hosts' toplevels in one nix
// eval and builds one, with the machine's nix, from the commit written
// into a shallow repository: the path built is the path evaluated, and
// self.rev is the commit.
func TestLocalNixEvaluatesAndBuilds(t *testing.T) {
	nix := &LocalNix{}
	if !nix.Available() {
		t.Skip("no nix here")
	}
	repo, commit := testRepo(t)
	co, err := nix.Checkout(t.Context(), repo, commit, "infra/nix")
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	tops, err := nix.EvalToplevels(t.Context(), co, []string{"web", "db"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(tops["web"], "-nixos-system-web-"+commit[:7]) || !strings.HasSuffix(tops["db"], "-nixos-system-db") {
		t.Fatalf("toplevels %v", tops)
	}
	attrs, err := nix.FlakeAttributes(t.Context(), co)
	if err != nil || !slices.Equal(attrs, []string{"db", "web"}) {
		t.Fatalf("attributes %v, %v", attrs, err)
	}
	built, err := nix.Build(t.Context(), co, "web")
	if err != nil || built != tops["web"] {
		t.Fatalf("built %q, %v; want %s", built, err, tops["web"])
	}
	if b, _ := os.ReadFile(built); strings.TrimSpace(string(b)) != commit {
		t.Errorf("the build saw self.rev %q, want %s", b, commit)
	}
	if _, err := nix.EvalToplevels(t.Context(), co, []string{`x"; builtins.abort "`}); err == nil {
		t.Error("an attribute that is not a Nix identifier reached nix eval")
	}
	if _, err := nix.EvalToplevels(t.Context(), co, []string{"nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a missing attribute: %v", err)
	}
}

// Every command line the bot sends parses as POSIX shell, and systemctl
// show is never asked about two units at once (it separates them with a
// blank line, which a check of "$(...)" = inactive never matches).
func TestScriptsParse(t *testing.T) {
	for _, user := range []string{"root", "nestbot"} {
		n := newNames(rev, "infra/nix", user)
		ins := &inspection{}
		scripts := map[string]string{
			"probe":        probeScript(n.inspectSections(ins)),
			"ship":         n.shipScript(),
			"build":        n.buildScript("web", "", time.Hour),
			"build local":  n.buildScript("web", "/nix/store/abc-nixos-system-web", time.Hour),
			"arm":          n.armScript(2*time.Second, false),
			"arm again":    n.armScript(2*time.Second, true),
			"confirm":      n.confirmScript(),
			"rollback-now": n.rollbackNowScript(),
			"rollback":     n.rollbackScript(),
			"boot":         n.bootScript(),
			"record":       n.recordScript(),
			"health":       n.healthScript(time.Second),
		}
		twoUnits := regexp.MustCompile(`systemctl show (\S+\.(service|timer)) +\S+\.(service|timer)`)
		// What systemd-run is given to run must hold no "$" (see startUnit).
		unitArgs := regexp.MustCompile(`systemd-run --unit=\S+ (.*)`)
		for name, s := range scripts {
			if out, err := exec.Command("/bin/sh", "-n", "-c", s).CombinedOutput(); err != nil {
				t.Errorf("%s: %v: %s\n%s", name, err, out, s)
			}
			if m := twoUnits.FindString(s); m != "" {
				t.Errorf("%s asks systemctl show about two units at once: %s", name, m)
			}
			for _, m := range unitArgs.FindAllStringSubmatch(s, -1) {
				args := strings.NewReplacer(`"--setenv=PATH=$PATH"`, "", `"$P"`, "", `"$G"`, "", `"$(id -un)"`, "", `"$T`, "", `$d/`, "", `$P"`, "", `|| exit`, "").Replace(m[1])
				if strings.Contains(args, "$") {
					t.Errorf("%s gives systemd-run a \"$\", which a daemon-reload breaks: %s", name, m[1])
				}
			}
		}
		arm := scripts["arm"]
		if !strings.Contains(arm, "--on-active=2000ms") || !strings.Contains(arm, `switch-to-configuration" test`) ||
			strings.Index(arm, "--unit=nest-rollback-") > strings.Index(arm, "--unit=nest-activate-") {
			t.Errorf("arm, then activate with test:\n%s", arm)
		}
		if !strings.Contains(arm, "reset-failed") || strings.Contains(scripts["arm again"], "reset-failed") {
			t.Errorf("the first attempt clears what an earlier one left, a second clears nothing")
		}
		if strings.Contains(scripts["rollback"], "stop") {
			t.Errorf("the rollback stops something: it must wait for an activation, never kill it:\n%s", scripts["rollback"])
		}
		if user == "nestbot" && !strings.Contains(arm, "sudo -n "+SudoBinDir+"/systemd-run --unit=nest-rollback-bbbbbbbbbbbb") {
			t.Errorf("a deploy user's root commands go through sudo:\n%s", arm)
		}
	}
}

// TestSudoRulesCoverEveryRootCommand: each sudo command line in the
// scripts matches one of SudoRules, with sudo's wildcards.
func TestSudoRulesCoverEveryRootCommand(t *testing.T) {
	n := newNames(rev, "infra/nix", "nestbot")
	all := strings.Join([]string{n.buildScript("web", "", time.Hour), n.armScript(time.Minute, false), n.armScript(time.Minute, true),
		n.confirmScript(), n.rollbackNowScript(), n.bootScript()}, "\n")
	var cmds []string
	for _, line := range SudoRules("nestbot") {
		_, c, _ := strings.Cut(line, "NOPASSWD: ")
		cmds = append(cmds, c)
	}
	uses := regexp.MustCompile(`sudo -n (\S+ \S+ \S+)`).FindAllStringSubmatch(all, -1)
	if len(uses) < 5 {
		t.Fatalf("only %d sudo command lines found", len(uses))
	}
	for _, u := range uses {
		covered := false
		for _, c := range cmds {
			if ok, _ := filepath.Match(c, u[1]); ok || strings.HasPrefix(u[1], strings.TrimSuffix(c, "*")) && strings.HasSuffix(c, "*") {
				covered = true
			}
		}
		if !covered {
			t.Errorf("sudo %s is not in SudoRules %q", u[1], cmds)
		}
	}
}

func TestParseProbe(t *testing.T) {
	const sys = "/nix/store/abc-nixos-system-web-25.05.1"
	out := "@version\n{\"nixosVersion\":\"25.05.1\"}\n\n@system\n" + sys + "\n@booted\n" + sys + "\n@profile\nsystem-41-link\n@profiletop\n" + sys +
		"\n@deployed\n" + rev + " " + sys + "\n@unit-x\nActiveState=active\nSubState=exited\nResult=success\nExecMainStatus=0\n@end\n"
	secs := parseSections(out)
	p, err := parseProbe(secs)
	if err != nil || p.Revision != rev || p.Deployed != rev || p.ConfigurationRevision != "" || p.System != sys || !p.Boots() || p.Generation != 41 || p.NixOSVersion != "25.05.1" {
		t.Errorf("probe %+v, %v", p, err)
	}
	// A system nestbot did not confirm (rolled back by hand) is not the recorded commit's.
	other := strings.Replace(out, "@system\n"+sys, "@system\n/nix/store/zzz-nixos-system-web", 1)
	if p, _ := parseProbe(parseSections(other)); p.Revision != "" || p.Boots() {
		t.Errorf("another system than the recorded one: %+v", p)
	}
	if u := parseUnit(secs["unit-x"]); !u.active() {
		t.Errorf("unit %+v", u)
	}
	if _, err := parseProbe(parseSections("@version\n\n@profile\nsystem-1-link\n@end\n")); err == nil || !strings.Contains(err.Error(), "NixOS") {
		t.Errorf("not NixOS: %v", err)
	}
	if _, err := parseProbe(parseSections("@version\n{\"nixosVersion\":\"25.05\"}\n@profile\nsystem-1-link\n")); err == nil {
		t.Error("a cut-off probe parsed")
	}
}

func TestHealthNamesTheUnit(t *testing.T) {
	// As systemd 252 prints failed units, even with --plain.
	got := unitNames([]string{"● sshd.service loaded failed failed OpenSSH", "web.service loaded failed failed Web", ""})
	if !slices.Equal(got, []string{"sshd.service", "web.service"}) {
		t.Errorf("units %q", got)
	}
}

func TestBatchesFromSteps(t *testing.T) {
	steps := []reconcile.Step{
		{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: reconcile.MustParseAddress("aws.instance.x")},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host.w2"), Batch: 2},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host.cp"), Batch: 1},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host.w1"), Batch: 2},
		{Plane: reconcile.PlaneHosts, Action: reconcile.ActionDrift, Address: reconcile.MustParseAddress("host.w3")},
	}
	got, err := BatchesFromSteps(steps)
	if err != nil || len(got) != 2 || !slices.Equal(got[0], []string{"cp"}) || !slices.Equal(got[1], []string{"w2", "w1"}) {
		t.Errorf("batches %v, %v", got, err)
	}
	if _, err := BatchesFromSteps([]reconcile.Step{{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host.x")}}); err == nil {
		t.Error("a roll step without a batch was accepted")
	}
}

// noDialer reaches nothing.
type noDialer struct{}

func (noDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errors.New("no network here")
}

func TestRunRefusesBadConfiguration(t *testing.T) {
	good := func() Rollout {
		return Rollout{Dialer: noDialer{}, Hosts: []Target{{Name: "web"}}, Batches: [][]string{{"web"}}, Source: &git.Repo{}, FlakeDir: "nix", Revision: rev}
	}
	for _, tc := range []struct {
		name, want string
		edit       func(*Rollout)
	}{
		{"no dialer", "no dialer", func(r *Rollout) { r.Dialer = nil }},
		{"bad revision", "bad revision", func(r *Rollout) { r.Revision = "a b" }},
		{"no source", "no source", func(r *Rollout) { r.Source = nil }},
		{"flake outside", "bad flake directory", func(r *Rollout) { r.FlakeDir = "../x" }},
		{"unknown host", "not among the hosts", func(r *Rollout) { r.Batches = [][]string{{"db"}} }},
		{"twice", "in two batches", func(r *Rollout) { r.Batches = [][]string{{"web"}, {"web"}} }},
		{"short confirm", "too short", func(r *Rollout) { r.ConfirmWithin = time.Millisecond }},
		{"empty health", "empty health", func(r *Rollout) { r.Health = []string{" "} }},
		{"bad attribute", "bad flake attribute", func(r *Rollout) { r.Hosts[0].Attr = `web"; x` }},
		{"openssh without a key", "needs nestbot's key", func(r *Rollout) { r.Hosts[0].Login = Login{Via: ViaOpenSSH, User: "nestbot"} }},
		{"bad user", "bad login user", func(r *Rollout) { r.Hosts[0].Login = Login{User: "ro ot"} }},
		{"unknown build_on", "build_on", func(r *Rollout) { r.BuildOn = "cloud" }},
		{"local without nix", "needs nix", func(r *Rollout) { r.BuildOn = BuildLocal }},
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
		{Host: "cp", Step: "armed", Generation: 7}, {Host: "cp", Step: "activating", Generation: 7}, {Host: "cp", Step: "health", Generation: 7}, {Host: "cp", Step: "confirmed", Generation: 7},
		{Host: "w1", Step: "armed", Generation: 3}, {Host: "w1", Step: "activating", Generation: 3},
		{Host: "w2", Step: "shipping"}, {Host: "w3", Step: "building"},
		{Host: "w4", Step: "booting", Generation: 5},
	} {
		e.Rollout = rev
		if err := j.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	in, err := Interrupted(j, rev)
	if err != nil || len(in) != 2 || in[0].Host != "w1" || in[0].Step != StateActivating || in[0].Generation != 3 || in[1].Host != "w4" {
		t.Errorf("interrupted %+v, %v; want w1 activating (generation 3) and w4 booting", in, err)
	}
}

// TestLoginUnitsAreNotTheSystems: the units logind starts and stops with
// logins do not fail a rollout's unit check; the system's own do.
func TestLoginUnitsAreNotTheSystems(t *testing.T) {
	for u, want := range map[string]bool{
		"user-runtime-dir@0.service": true, "user@1000.service": true, "session-12.scope": true,
		"sshd.service": false, "broken.service": false, "session-x.service": false, "userdb.service": false,
	} {
		if got := loginUnit(u); got != want {
			t.Errorf("loginUnit(%q) = %v, want %v", u, got, want)
		}
	}
}
