package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/internal/cli"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/spf13/cobra"
)

type planOptions struct {
	IO               *IO
	File             string
	Live             string
	SaveLive         string
	SavePlan         string
	Cloud            cloudFlags
	Tailnet          tailnetFlags
	Format           string
	Out              string
	Revision         string
	DetailedExitcode bool
}

func newPlanCmd(io *IO) *cobra.Command {
	opts := &planOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what nestbot would change to make the fleet match nest.yaml",
		Long: `Plan compares nest.yaml with the live fleet and prints the steps an apply
would take: cloud resources, tailnet, certificates, and the hosts to roll.

The live state is observed (today: the cloud plane, through the AWS SDK's
default credential chain; AWS_ENDPOINT_URL or --aws-endpoint point it
elsewhere), or read from a snapshot (--live FILE), so any plan can be
reproduced offline; --save-live writes one.

Exit codes: 0 success, 1 error, 2 success with changes when
--detailed-exitcode is given (as terraform plan).`,
		Args: cobra.NoArgs,
		Example: `  nestbot plan --live live.json
  nestbot plan -f examples/ducksnest/nest.yaml --live examples/ducksnest/live/empty.json
  nestbot plan --live live.json --format markdown --out plan.md
  nestbot plan --live live.json --format json | jq .summary
  nestbot plan --save-live live.json --save-plan plan.json`,
		RunE: func(*cobra.Command, []string) error { return runPlan(opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.Live, "live", "", "read the live state from this snapshot file instead of observing it")
	f.StringVar(&opts.SaveLive, "save-live", "", "write the observed live state to this snapshot file")
	f.StringVar(&opts.SavePlan, "save-plan", "", "write the plan for a later nestbot apply --plan")
	f.StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	opts.Tailnet.register(cmd)
	f.StringVar(&opts.Format, "format", "text", "output format: text, markdown or json")
	f.StringVar(&opts.Out, "out", "", "write the plan to this file instead of standard output")
	f.StringVar(&opts.Revision, "revision", "", "the commit hosts roll to (default: the snapshot's repo.revision)")
	f.BoolVar(&opts.DetailedExitcode, "detailed-exitcode", false, "exit 2 when the plan has changes")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "markdown", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runPlan(opts *planOptions) error {
	switch opts.Format {
	case "text", "markdown", "json":
	default:
		return fmt.Errorf("--format %q: use text, markdown or json", opts.Format)
	}
	d, err := loadDesired(opts.File)
	if err != nil {
		return err
	}
	var live *reconcile.Live
	if opts.Live != "" {
		if live, err = reconcile.ReadLive(opts.Live); err != nil {
			return err
		}
	} else {
		s, err := fleet.Observe(context.Background(), d, fleetOptions(opts.IO, opts.Cloud, opts.Tailnet))
		if err != nil {
			return err
		}
		s.Close()
		live = s.Live
	}
	if opts.SaveLive != "" {
		var b bytes.Buffer
		if err := live.Encode(&b); err != nil {
			return err
		}
		if err := cli.WriteFileAtomic(opts.SaveLive, b.Bytes()); err != nil {
			return err
		}
	}
	plan, err := reconcile.Diff(reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}, live, reconcile.Options{Revision: opts.Revision})
	if err != nil {
		return fmt.Errorf("plan %s:\n%w", d.Fleet.Name, indentErr(err))
	}
	if opts.SavePlan != "" {
		var b bytes.Buffer
		saved := &reconcile.SavedPlan{Plan: plan, DesiredDigest: d.Digest(), LiveDigest: reconcile.DigestLive(live)}
		if err := saved.Encode(&b); err != nil {
			return err
		}
		if err := cli.WriteFileAtomic(opts.SavePlan, b.Bytes()); err != nil {
			return err
		}
	}
	buf, err := render(opts.IO, plan, opts.Format, opts.Out == "")
	if err != nil {
		return err
	}
	if opts.Out != "" {
		err = cli.WriteFileAtomic(opts.Out, buf.Bytes())
	} else {
		_, err = opts.IO.Out.Write(buf.Bytes())
	}
	if err != nil {
		return err
	}
	if opts.DetailedExitcode && plan.HasChanges() {
		return &cli.ExitError{Code: 2}
	}
	return nil
}

// render formats a plan; colour only for a terminal, never with NO_COLOR.
func render(io *IO, plan *reconcile.Plan, format string, toStdout bool) (bytes.Buffer, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case "text":
		color := toStdout && io.IsTerminal() && io.Getenv("NO_COLOR") == ""
		err = reconcile.RenderText(&buf, plan, reconcile.TextOptions{Color: color})
	case "markdown":
		buf.WriteString(strings.Join(reconcile.RenderMarkdown(plan), "\n"))
	case "json":
		err = reconcile.RenderJSON(&buf, plan)
	}
	return buf, err
}

func indentErr(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}
