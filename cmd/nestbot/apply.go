package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

type applyOptions struct {
	IO          *IO
	File        string
	PlanFile    string
	Targets     []string
	AutoApprove bool
	NoCommit    bool
	Revision    string
	Cloud       cloudFlags
	Tailnet     tailnetFlags
}

func newApplyCmd(io *IO) *cobra.Command {
	opts := &applyOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Make the fleet match nest.yaml: plan, confirm, apply",
		Long: `Apply observes the live fleet, plans, shows the plan and asks for
confirmation (on a terminal; elsewhere --auto-approve is required), then
applies the steps plane by plane, stopping at the first failure and saying
what was applied before it.

With --plan FILE it applies a plan saved by nestbot plan --save-plan, and
refuses if nest.yaml or the live state changed since. --target limits the
apply to some addresses and the steps they need.

Certificates are written into the repository's pki.dir and committed as one
commit on the checked-out branch (unless --no-commit).`,
		Args: cobra.NoArgs,
		Example: `  nestbot apply
  nestbot apply --auto-approve --target aws.instance.ec2-controlplane
  nestbot plan --save-plan plan.json && nestbot apply --plan plan.json`,
		RunE: func(*cobra.Command, []string) error { return runApply(opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.PlanFile, "plan", "", "apply this saved plan (from nestbot plan --save-plan)")
	f.StringSliceVar(&opts.Targets, "target", nil, "apply only these addresses and what they need (repeatable)")
	f.BoolVar(&opts.AutoApprove, "auto-approve", false, "apply without asking")
	f.BoolVar(&opts.NoCommit, "no-commit", false, "write certificates into pki.dir, do not commit them")
	f.StringVar(&opts.Revision, "revision", "", "the commit being applied (seeds idempotency tokens; default GITHUB_SHA)")
	f.StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	opts.Tailnet.register(cmd)
	return cmd
}

func runApply(opts *applyOptions) error {
	ctx := context.Background()
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	s, err := observeLive(ctx, d, opts.Cloud, opts.Tailnet, opts.IO.Getenv)
	if err != nil {
		return err
	}
	defer s.Close()
	var plan *reconcile.Plan
	if opts.PlanFile != "" {
		data, err := os.ReadFile(opts.PlanFile)
		if err != nil {
			return err
		}
		saved, err := reconcile.DecodeSavedPlan(opts.PlanFile, data)
		if err != nil {
			return err
		}
		if err := saved.Check(d.Digest(), s.Live); err != nil {
			return fmt.Errorf("%s: %w", opts.PlanFile, err)
		}
		plan = saved.Plan
	} else if plan, err = reconcile.Diff(reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}, s.Live, reconcile.Options{Revision: opts.Revision}); err != nil {
		return fmt.Errorf("plan %s:\n%w", d.Fleet.Name, indentErr(err))
	}
	if len(opts.Targets) > 0 {
		if plan, err = reconcile.Target(plan, opts.Targets); err != nil {
			return err
		}
	}
	out, err := render(opts.IO, plan, "text", true)
	if err != nil {
		return err
	}
	opts.IO.Out.Write(out.Bytes())
	if !plan.HasChanges() {
		return nil
	}
	if !opts.AutoApprove {
		if err := confirm(opts.IO); err != nil {
			return err
		}
	}
	revision := firstNonEmpty(opts.Revision, plan.Revision, opts.IO.Getenv("GITHUB_SHA"))
	logf := func(format string, args ...any) { fmt.Fprintf(opts.IO.Err, format+"\n", args...) }
	exec := &reconcile.Executor{Appliers: map[reconcile.Plane]reconcile.PlaneApplier{}}
	if s.EC2 != nil {
		a := &nestaws.Applier{Client: s.EC2, Fleet: d.Fleet, Live: &s.Live.Cloud, Revision: revision, Logf: logf,
			AuthKey: authKeySource(d.Fleet, opts.IO.Getenv)}
		exec.Appliers[reconcile.PlaneCloud] = cloudApplier(a)
	}
	if s.Bot != nil {
		exec.Appliers[reconcile.PlaneTailnet] = tailnetApplier(s.Bot, d.Fleet, logf)
	}
	if d.Fleet.PKI != nil && s.Live.Observed(reconcile.PlanePKI) {
		exec.Appliers[reconcile.PlanePKI] = pkiApplier(d, s, opts.IO, opts.NoCommit)
	}
	if s.Bot != nil && s.Repo != nil {
		exec.Appliers[reconcile.PlaneHosts] = rolloutApplier(s, d, s.Repo, opts.Tailnet.stateDir(opts.IO.Getenv), opts.IO, false)
	}
	rep, applyErr := exec.Apply(ctx, plan)
	printReport(opts.IO, rep)
	if applyErr != nil {
		return fmt.Errorf("apply failed: %w\nThe steps above marked applied were applied; run nestbot plan to see what is left", applyErr)
	}
	return nil
}

// cloudApplier adapts the AWS applier to the executor.
func cloudApplier(a *nestaws.Applier) reconcile.PlaneApplier {
	return func(ctx context.Context, steps []reconcile.Step) ([]reconcile.StepResult, error) {
		done, err := a.Apply(ctx, steps)
		var out []reconcile.StepResult
		for i, st := range steps {
			switch {
			case i < len(done):
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusApplied, Detail: done[i].ID})
			case i == len(done) && err != nil:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusFailed, Detail: err.Error()})
			default:
				out = append(out, reconcile.StepResult{Step: st, Status: reconcile.StatusSkipped, Detail: "an earlier step failed"})
			}
		}
		return out, err
	}
}

// authKeySource reads the tailnet auth key for new hosts from the secret
// nest.yaml names.
func authKeySource(f *nest.Fleet, getenv func(string) string) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) {
		if f.Tailnet.AuthKey == nil {
			return "", errors.New("tailnet.auth_key is not set in nest.yaml: new instances could not join the tailnet")
		}
		return f.Tailnet.AuthKey.Resolve(getenv)
	}
}

func confirm(io *IO) error {
	if !io.IsTerminal() {
		return errors.New("not on a terminal: pass --auto-approve to apply without asking")
	}
	fmt.Fprint(io.Out, "\nDo you want to apply this plan? Only 'yes' will be accepted: ")
	line, _ := bufio.NewReader(io.In).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &exitError{code: 1, msg: "Apply cancelled."}
	}
	return nil
}

func printReport(io *IO, rep *reconcile.Report) {
	fmt.Fprintln(io.Out)
	width := 0
	for _, r := range rep.Results {
		width = max(width, len(r.Step.Address))
	}
	for _, r := range rep.Results {
		detail := r.Detail
		if r.Status == reconcile.StatusDrift {
			detail = r.Step.Reason
		}
		fmt.Fprintf(io.Out, "  %-*s  %-8s %-9s %s\n", width, r.Step.Address, r.Step.Action, r.Status, detail)
	}
	fmt.Fprintf(io.Out, "\nApply: %d applied, %d failed, %d skipped.\n",
		rep.Count(reconcile.StatusApplied), rep.Count(reconcile.StatusFailed), rep.Count(reconcile.StatusSkipped))
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
