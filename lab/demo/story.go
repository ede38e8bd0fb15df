package demo

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ducksnest/nestbot/gitops/fleet"
	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// Story is what the demo's pull requests came to.
type Story struct {
	Bootstrap, AddWorker, Change, Break *Step
	Hosts                               []HostRow
	Took                                time.Duration
}

// The worker the first pull request adds.
const newWorker = "ec2-worker-1"

// Play runs the story: nestbot applies the default branch once; a pull
// request adds an EC2 worker; one changes a host's configuration; one
// breaks a host. Each is planned on the pull request and applied on merge.
func (d *Demo) Play(ctx context.Context) (*Story, error) {
	start := time.Now()
	s := &Story{}
	var err error
	d.say("nestlab demo: the DucksNest fleet in a lab on this machine.\n")
	d.say("  GitHub   %s (repository %s, webhook to nestbot serve at %s)", d.GitHub.ServerURL(), d.Repo.FullName(), d.Webhook)
	d.say("  AWS      %s (the EC2 API, driven by the AWS SDK)", d.Lab.EC2.URL())
	d.say("  tailnet  %s (tailscale's control and DERP servers)", d.Lab.Tailnet.ControlURL())
	d.say("  on-prem  %s (NixOS-like hosts of real programs — systemd, sshd, tailscaled, nix — under systemd-nspawn, reached over Tailscale SSH)", strings.Join(d.Lab.HostNames(), ", "))

	d.heading("1. The fleet as it stands: nestbot applies the default branch once, as after a first merge.")
	if s.Bootstrap, err = d.bootstrap(ctx); err != nil {
		return s, err
	}
	d.applyResult(s.Bootstrap)

	d.heading("2. A pull request adds " + newWorker + ", a second EC2 instance.")
	yaml, err := d.readMain("nest.yaml")
	if err != nil {
		return s, err
	}
	flake, err := d.readMain("infra/nix/flake.nix")
	if err != nil {
		return s, err
	}
	if s.AddWorker, err = d.pullRequest(ctx, "add-"+newWorker, "Add "+newWorker, WorkerFiles(newWorker, yaml, flake), d.showPlan); err != nil {
		return s, err
	}
	d.newHost(newWorker)

	d.heading("3. A pull request changes laptop-ultra's configuration: only that host rolls.")
	if s.Change, err = d.pullRequest(ctx, "ultra-keepalive", "laptop-ultra: keep idle SSH sessions alive", map[string]string{
		"infra/nix/hosts/laptop-ultra/configuration.nix": hostConfig("laptop-ultra", `  services.openssh.settings.ClientAliveInterval = 60;`),
	}, d.planHosts); err != nil {
		return s, err
	}

	d.heading("4. A pull request breaks laptop-firebat (a failing service) and touches laptop-ultra.")
	if s.Break, err = d.pullRequest(ctx, "firebat-break", "laptop-firebat: new service", map[string]string{
		"infra/nix/hosts/laptop-firebat/configuration.nix": hostConfig("laptop-firebat", `  # A new service that fails as it starts: the switch reports it (exit 4).
  systemd.services.broken = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig.Type = "oneshot";
    script = "echo 'broken: cannot start'; exit 1";
  };`),
		"infra/nix/hosts/laptop-ultra/configuration.nix": hostConfig("laptop-ultra", `  services.openssh.settings.ClientAliveInterval = 120;`),
	}, d.planHosts); err != nil {
		return s, err
	}

	d.heading("5. Where every host is now.")
	if s.Hosts, err = d.Hosts(); err != nil {
		return s, err
	}
	main, _ := d.GitHub.Branch(d.Repo.Owner, d.Repo.Name, "main")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   HOST\tREVISION\tGEN\tCERTIFICATES EXPIRE")
	for _, h := range s.Hosts {
		rev := fleet.ShortRev(h.Revision)
		if h.Revision == main {
			rev += " (main)"
		}
		exp := "-"
		if !h.CertsExpire.IsZero() {
			exp = h.CertsExpire.UTC().Format("2006-01-02")
		}
		fmt.Fprintf(tw, "   %s\t%s\t%d\t%s\n", h.Host, rev, h.Generation, exp)
	}
	tw.Flush()
	s.Took = time.Since(start)
	d.say("\nThe story took %s. Every request nestbot sent to the lab's GitHub was checked against GitHub's OpenAPI description: %s.",
		s.Took.Round(100*time.Millisecond), violations(d.GitHub.Violations()))
	return s, nil
}

func violations(v []string) string {
	if len(v) == 0 {
		return "all valid"
	}
	return fmt.Sprintf("%d invalid (%s)", len(v), v[0])
}

// bootstrap tells nestbot about the default branch's head as a push, and
// waits for the apply.
func (d *Demo) bootstrap(ctx context.Context) (*Step, error) {
	head, err := d.GitHub.Branch(d.Repo.Owner, d.Repo.Name, "main")
	if err != nil {
		return nil, err
	}
	d.takeEvents()
	ev, err := d.GitHub.PushEvent(labgithub.Pushed{Owner: d.Repo.Owner, Repo: d.Repo.Name, Ref: "refs/heads/main",
		Before: strings.Repeat("0", 40), After: head, Pusher: d.Repo.Owner})
	if err != nil {
		return nil, err
	}
	if _, err := d.GitHub.Send(ctx, ev); err != nil {
		return nil, err
	}
	st := &Step{Merge: head}
	select {
	case <-d.applied:
	case <-ctx.Done():
		return st, fmt.Errorf("demo: waiting for the first apply: %w", ctx.Err())
	}
	deps, err := d.GitHub.Deployments(d.Repo.Owner, d.Repo.Name)
	if err != nil || len(deps) == 0 {
		return st, fmt.Errorf("demo: the first apply made no deployment (%v)", err)
	}
	dep := deps[len(deps)-1]
	if n := len(dep.Statuses); n > 0 {
		st.Deployment, st.Detail = dep.Statuses[n-1].State, dep.Statuses[n-1].Description
	}
	st.Rolled = rolls(d.takeEvents())
	return st, nil
}

func (d *Demo) heading(s string) { d.say("\n%s", s) }

func (d *Demo) readMain(p string) (string, error) {
	tree, err := d.mainTree()
	if err != nil {
		return "", err
	}
	b, err := fs.ReadFile(tree, p)
	return string(b), err
}

// showPlan prints the plan comment as GitHub renders its Markdown source.
func (d *Demo) showPlan(st *Step) {
	d.say("   nestbot's plan comment on #%d (%s), as posted:\n", st.Number, st.PlanTitle)
	for _, line := range strings.Split(strings.TrimRight(st.Plan, "\n"), "\n") {
		d.say("   │ %s", line)
	}
	d.say("")
}

// hostLines prints the hosts the plan rolls.
// pullRequest opens a pull request with files, shows its plan with show,
// merges it, and shows what nestbot applied.
func (d *Demo) pullRequest(ctx context.Context, branch, title string, files map[string]string, show func(*Step)) (*Step, error) {
	st, err := d.PullRequest(ctx, branch, title, files)
	if err != nil {
		return nil, err
	}
	show(st)
	if err := d.Merge(ctx, st); err != nil {
		return st, err
	}
	d.applyResult(st)
	return st, nil
}

// planHosts shows a plan's title and its hosts' lines.
func (d *Demo) planHosts(st *Step) {
	d.say("   The plan on #%d: %s", st.Number, st.PlanTitle)
	d.hostLines(st.Plan)
}

// WorkerFiles are the files, by their path in the example repository, of a
// pull request that adds an EC2 worker called name: nest.yaml and the
// flake (given as they are) with it, and its configuration.
func WorkerFiles(name, nestYAML, flake string) map[string]string {
	worker := fmt.Sprintf(`  %s:
    roles: [worker]
    aws:
      instance_type: t3.small
      ami: {name: NixOS-25.05-updated-kernel-image}
      subnet: public-c
      root_volume: {size_gb: 20, type: gp3, encrypted: true}
`, name)
	return map[string]string{
		"nest.yaml":           strings.Replace(nestYAML, "  laptop-firebat:", worker+"  laptop-firebat:", 1),
		"infra/nix/flake.nix": strings.Replace(flake, `[ "ec2-controlplane" `, `[ "ec2-controlplane" "`+name+`" `, 1),
		"infra/nix/hosts/" + name + "/configuration.nix": hostConfig(name, ""),
	}
}

// hostConfig is a worker's hosts/<name>/configuration.nix in the example,
// with more lines.
func hostConfig(name, more string) string {
	if more != "" {
		more += "\n"
	}
	return fmt.Sprintf("{ ... }:\n{\n  networking.hostName = \"ducksnest-%s\";\n  # Kubernetes worker; certificates under ../../secrets/certs/derived/%s/\n  services.kubernetes.roles = [ \"node\" ];\n%s}\n", name, name, more)
}

func (d *Demo) hostLines(plan string) {
	for _, line := range strings.Split(plan, "\n") {
		if strings.HasPrefix(line, "| `>` | `host.") {
			cells := strings.Split(line, "|")
			if len(cells) >= 5 {
				d.say("     %s %s: %s", strings.Trim(strings.TrimSpace(cells[2]), "`"), strings.TrimSpace(cells[3]), strings.TrimSpace(cells[4]))
			}
		}
	}
}

// applyResult narrates a merge's apply: the deployment and each host's part.
func (d *Demo) applyResult(st *Step) {
	if st.Number > 0 {
		d.say("   Merged #%d as %s; nestbot applied it.", st.Number, fleet.ShortRev(st.Merge))
	}
	d.say("   Deployment: %s — %s", st.Deployment, st.Detail)
	if len(st.Rolled) == 0 {
		d.say("   No host rolled.")
		return
	}
	d.say("   Rollout, in order:")
	for _, r := range st.Rolled {
		line := fmt.Sprintf("     batch %d  %-18s %s", r.Batch, r.Host, r.Final)
		if r.Detail != "" && r.Final != "confirmed" {
			line += ": " + r.Detail
		}
		d.say("%s", line)
	}
}

// newHost narrates how a new EC2 host came to be.
func (d *Demo) newHost(name string) {
	for _, in := range d.Lab.EC2.Instances() {
		if in.Tags["nest:host"] == name {
			d.say("   %s is instance %s (%s, %s); its user-data carried an auth key minted for it.", name, in.ID, in.InstanceType, in.State)
		}
	}
	if h, ok := d.Lab.Host(name); ok {
		d.say("   It booted, joined the tailnet as %s, and its SSH host key was pinned in the repository:", h.TailscaleIP())
	}
	tree, err := d.mainTree()
	if err == nil {
		if b, err := fs.ReadFile(tree, certsDir+"/hosts/"+name+".pub"); err == nil {
			d.say("     %s/hosts/%s.pub: %s", certsDir, name, strings.TrimSpace(string(b)))
		}
		d.say("   Its certificates expire %s; their keys are encrypted to it and the admins.", certsExpire(tree, name).UTC().Format("2006-01-02"))
	}
}

// Problems are the story's steps that did not come out as the demo tells
// them, each saying which and how; none when the story held.
func (s *Story) Problems() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	finals := func(st *Step) map[string]string {
		m := map[string]string{}
		for _, r := range st.Rolled {
			m[r.Host] = r.Final
		}
		return m
	}
	if st := s.Bootstrap; st == nil {
		bad("1: the first apply did not run")
	} else if st.Deployment != "success" || len(st.Rolled) != 3 {
		bad("1: the first apply should succeed and roll the 3 hosts; it came out %s, %d rolled: %s", st.Deployment, len(st.Rolled), st.Detail)
	}
	if st := s.AddWorker; st == nil {
		bad("2: the pull request adding %s did not run", newWorker)
	} else if f := finals(st); st.Deployment != "success" || f[newWorker] != "confirmed" {
		bad("2: adding %s should succeed with it rolled and confirmed; it came out %s (%s rolled %q): %s", newWorker, st.Deployment, newWorker, f[newWorker], st.Detail)
	}
	if st := s.Change; st == nil {
		bad("3: the pull request changing laptop-ultra did not run")
	} else if f := finals(st); st.Deployment != "success" || len(f) != 1 || f["laptop-ultra"] != "confirmed" {
		bad("3: changing laptop-ultra should roll it alone; it came out %s, rolled %v: %s", st.Deployment, f, st.Detail)
	}
	if st := s.Break; st == nil {
		bad("4: the pull request breaking laptop-firebat did not run")
	} else if f := finals(st); st.Deployment != "failure" || f["laptop-firebat"] != "rolled-back" || f["laptop-ultra"] == "confirmed" {
		bad("4: breaking laptop-firebat should roll it back and halt before laptop-ultra; it came out %s, rolled %v", st.Deployment, f)
	}
	for _, h := range s.Hosts {
		if h.CertsExpire.IsZero() || h.CertsExpire.Before(time.Now()) {
			bad("5: %s should have certificates valid for about a year; they expire %s", h.Host, h.CertsExpire.Format("2006-01-02"))
		}
		if h.Revision == "" {
			bad("5: %s should run a commit of the repository; it reports none", h.Host)
		}
	}
	return out
}
