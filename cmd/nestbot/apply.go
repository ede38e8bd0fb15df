package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/internal/cli"
	"github.com/ducksnest/nestbot/reconcile"
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd.Context(), opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.PlanFile, "plan", "", "apply this saved plan (from nestbot plan --save-plan)")
	f.StringSliceVar(&opts.Targets, "target", nil, "apply only these addresses and what they need (repeatable)")
	f.BoolVar(&opts.AutoApprove, "auto-approve", false, "apply without asking")
	f.BoolVar(&opts.NoCommit, "no-commit", false, "write certificates into pki.dir, do not commit them")
	f.StringVar(&opts.Revision, "revision", "", "the commit being applied: the revision hosts roll to (default: the checkout's HEAD)")
	f.StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	opts.Tailnet.register(cmd)
	return cmd
}

func runApply(ctx context.Context, opts *applyOptions) error {
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	s, err := fleet.Observe(ctx, d, fleetOptions(opts.IO, opts.Cloud, opts.Tailnet))
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
		if err := s.CheckSaved(saved); err != nil {
			return fmt.Errorf("%s: %w: plan again", opts.PlanFile, err)
		}
		plan = saved.Plan
	} else if plan, err = s.Plan(opts.Revision); err != nil {
		return err
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
	applied, applyErr := s.Apply(ctx, plan, fleet.ApplyOptions{
		NoCommit: opts.NoCommit,
		Out:      opts.IO.Err,
	})
	printReport(opts.IO, applied.Report)
	if applyErr != nil {
		return fmt.Errorf("apply failed: %w\nThe steps above marked applied were applied; run nestbot plan to see what is left", applyErr)
	}
	return nil
}

func confirm(io *IO) error {
	if !io.IsTerminal() {
		return errors.New("not on a terminal: pass --auto-approve to apply without asking")
	}
	fmt.Fprint(io.Out, "\nDo you want to apply this plan? Only 'yes' will be accepted: ")
	line, _ := bufio.NewReader(io.In).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return &cli.ExitError{Code: 1, Msg: "Apply cancelled."}
	}
	return nil
}

func printReport(io *IO, rep *reconcile.Report) {
	fmt.Fprintln(io.Out)
	width := 0
	for _, r := range rep.Results {
		width = max(width, len(r.Step.Address.String()))
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
