package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/ducksnest/nestbot/reconcile/rollout"
)

type rolloutOptions struct {
	IO          *IO
	File        string
	Hosts       []string
	MaxParallel int
	DryRun      bool
	JSON        bool
	Tailnet     tailnetFlags
	Cloud       cloudFlags
}

func newHostsCmd(io *IO) *cobra.Command {
	opts := &rolloutOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "Show every host: online, tailnet address, revision, generation, and whether it is due",
		Long: `Hosts joins the tailnet as nestbot's ephemeral node, probes every host in
nest.yaml over SSH (nixos-version --json, /run/current-system, the system
profile's generation) and shows what each runs and whether a rollout of the
checked-out commit would switch it.`,
		Example: `  nestbot hosts
  nestbot hosts --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runHosts(cmd.Context(), opts) },
	}
	cmd.Flags().StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	opts.Tailnet.register(cmd)
	return cmd
}

func newRolloutCmd(io *IO) *cobra.Command {
	opts := &rolloutOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll the checked-out commit across the hosts whose system it changes",
		Long: `Rollout switches every due host to the checked-out commit — a host is due when
the system the commit builds for it is not what it runs and boots (by nix eval
where nix is installed, else by hosts.<name>.paths) — in rollout.order, at most
max_parallel at a time. On each host it ships the commit as a git repository,
builds the system (detached, bounded by build_timeout), then arms a dead-man
rollback (the host returns to what it ran unless nestbot confirms within
confirm_within), activates with switch-to-configuration test (detached, so a
restart of tailscaled or sshd cannot kill it), checks that no unit failed that
had not before and runs rollout.health, confirms, and only then makes it the
boot default (nix-env --set, switch-to-configuration boot) and records the
commit on the host. A failure rolls that host back and halts the rollout. A
journal in --state-dir lets a restarted rollout resume or report where it
stopped.`,
		Args: cobra.NoArgs,
		Example: `  nestbot rollout --dry-run
  nestbot rollout --hosts laptop-ultra
  nestbot rollout --hosts @control-plane,@tag:gpu
  nestbot rollout --max-parallel 3 --json`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRolloutCmd(cmd.Context(), opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringSliceVar(&opts.Hosts, "hosts", nil, "roll only these hosts (comma-separated): names, globs (web-*), @<role> (@worker) or @tag:<name> (a tailnet tag)")
	f.IntVar(&opts.MaxParallel, "max-parallel", 0, "hosts switching at once (default rollout.max_parallel)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "show which hosts would roll, in which batches, and stop")
	f.BoolVar(&opts.JSON, "json", false, "print progress as JSON events, one per line")
	opts.Tailnet.register(cmd)
	return cmd
}

// hostsSession observes the tailnet and the hosts (and the certificates,
// which the plan reads), not the cloud: rollouts never touch AWS.
func hostsSession(ctx context.Context, opts *rolloutOptions) (*fleet.Desired, *fleet.Session, *reconcile.Plan, error) {
	d, err := loadDesired(opts.File)
	if err != nil {
		return d, nil, nil, err
	}
	if opts.MaxParallel > 0 {
		d.Fleet.Rollout.MaxParallel = opts.MaxParallel
	}
	fo := fleetOptions(opts.IO, cloudFlags{}, opts.Tailnet)
	fo.Planes = []reconcile.Plane{reconcile.PlaneTailnet, reconcile.PlaneHosts, reconcile.PlanePKI}
	s, err := fleet.Observe(ctx, d, fo)
	if err != nil {
		return d, nil, nil, err
	}
	if !s.OnTailnet() {
		s.Close()
		return d, nil, nil, errors.New("hosts are reached over the tailnet: give nestbot an auth key (--ts-authkey, NESTBOT_TS_AUTHKEY or tailnet.auth_key)")
	}
	plan, err := s.PlanPlanes("", reconcile.PlaneTailnet, reconcile.PlaneHosts) // the plan of the hosts alone
	if err != nil {
		s.Close()
		return d, nil, nil, err
	}
	return d, s, plan, nil
}

func runHosts(ctx context.Context, opts *rolloutOptions) error {
	d, s, plan, err := hostsSession(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	type row struct {
		Host       string `json:"host"`
		Roles      string `json:"roles"`
		Online     bool   `json:"online"`
		TailnetIP  string `json:"tailnet_ip,omitempty"`
		Revision   string `json:"revision,omitempty"`
		Generation int    `json:"generation,omitempty"`
		Due        string `json:"due,omitempty"`
		Error      string `json:"error,omitempty"`
	}
	var rows []row
	live, hostErrors := s.Live(), s.HostErrors()
	for _, name := range d.HostNames() {
		r := row{Host: name, Roles: strings.Join(d.Fleet.Hosts[name].Roles, ",")}
		for _, n := range live.Tailnet.Nodes {
			if n.Name == name {
				r.Online = n.Online
				if len(n.IPs) > 0 {
					r.TailnetIP = n.IPs[0]
				}
			}
		}
		if run, ok := live.Hosts[name]; ok && run.Reachable {
			r.Revision, r.Generation = run.Revision, run.Generation
		}
		if err := hostErrors[name]; err != nil {
			r.Error = err.Error()
		}
		for _, st := range plan.StepsOf(reconcile.PlaneHosts) {
			if st.Address == reconcile.HostAddress(name) {
				r.Due = fmt.Sprintf("batch %d: %s", st.Batch, st.Reason)
			}
		}
		rows = append(rows, r)
	}
	if opts.JSON {
		fmt.Fprintln(opts.IO.Out, mustJSON(rows))
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLES\tONLINE\tTAILNET IP\tREVISION\tGEN\tDUE")
	for _, r := range rows {
		online, due, gen := "no", r.Due, "-"
		if r.Online {
			online = "yes"
		}
		if due == "" {
			due = "-"
		}
		if r.Error != "" {
			due = "unreachable: " + r.Error
		}
		if r.Generation > 0 {
			gen = fmt.Sprint(r.Generation)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, r.Roles, online, cmp.Or(r.TailnetIP, "-"), shortRev(r.Revision), gen, due)
	}
	tw.Flush()
	if s.Repo() != nil {
		fmt.Fprintf(opts.IO.Out, "\nTarget: %s (HEAD of the checkout holding %s)\n", shortRev(s.Repo().Revision()), opts.File)
	} else {
		fmt.Fprintf(opts.IO.Out, "\n%s is not in a git checkout: no target revision, nothing is due.\n", opts.File)
	}
	return nil
}

func runRolloutCmd(ctx context.Context, opts *rolloutOptions) error {
	d, s, plan, err := hostsSession(ctx, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Repo() == nil {
		return fmt.Errorf("%s is not in a git checkout: a rollout ships a commit", opts.File)
	}
	steps := plan.StepsOf(reconcile.PlaneHosts)
	if len(opts.Hosts) > 0 {
		picked, err := fleet.SelectHosts(d, s.Live(), opts.Hosts)
		if err != nil {
			return err
		}
		steps = slices.DeleteFunc(steps, func(st reconcile.Step) bool {
			return !slices.Contains(picked, st.Address.Name)
		})
	}
	if len(steps) == 0 {
		fmt.Fprintf(opts.IO.Out, "No host is due: every host runs %s or its configuration did not change.\n", shortRev(s.Repo().Revision()))
		return nil
	}
	if opts.DryRun {
		for _, st := range steps {
			fmt.Fprintf(opts.IO.Out, "batch %d  %-24s %s\n", st.Batch, st.Address.Name, st.Reason)
		}
		return nil
	}
	res, err := s.Rollout(ctx, steps, func(e rollout.Event) { printEvent(opts.IO, e, opts.JSON) })
	if opts.JSON {
		fmt.Fprintln(opts.IO.Out, mustJSON(res))
	} else {
		printRolloutResult(opts.IO, res)
	}
	if err != nil {
		return fmt.Errorf("rollout halted: %w", err)
	}
	return nil
}

func printRolloutResult(io *IO, res *rollout.Result) {
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nHOST\tBATCH\tSTATE\tFROM\tNOW\tDETAIL")
	for _, h := range res.Hosts {
		now := "(unreachable)"
		if h.Reachable {
			now = shortRev(h.Now.Revision)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", h.Name, h.Batch, h.State, shortRev(h.From), now, cmp.Or(h.Detail, "-"))
	}
	tw.Flush()
	for _, in := range res.Interrupted {
		fmt.Fprintf(io.Out, "An earlier rollout stopped on %s while %s (%s); found: %s\n", in.Host, in.Step, in.At.Format(time.DateTime), cmp.Or(in.Found, "-"))
	}
}

func printEvent(io *IO, e rollout.Event, jsonEvents bool) {
	if jsonEvents {
		fmt.Fprintln(io.Out, mustJSON(e))
		return
	}
	fmt.Fprintln(io.Err, e.String())
}

func shortRev(rev string) string { return fleet.ShortRev(rev) }

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("{%q:%q}", "error", err.Error())
	}
	return string(data)
}
