package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
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
	Targets          []string
	JSON             bool
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

--target ADDRESS narrows the plan to those addresses and the steps they
need (as apply --target does); --save-plan FILE keeps the plan for
nestbot apply --plan FILE, which applies exactly it.

Exit codes: 0 success, 1 error, 2 success with changes when
--detailed-exitcode is given (as terraform plan).`,
		Args: cobra.NoArgs,
		Example: `  nestbot plan --live live.json
  nestbot plan -f examples/ducksnest/nest.yaml --live examples/ducksnest/live/empty.json
  nestbot plan --live live.json --format markdown --out plan.md
  nestbot plan --live live.json --json | jq .summary
  nestbot plan --target aws.instance.ec2-controlplane
  nestbot plan --save-live live.json --save-plan plan.json`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPlan(cmd.Context(), opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.Live, "live", "", "read the live state from this snapshot file instead of observing it")
	f.StringVar(&opts.SaveLive, "save-live", "", "write the observed live state to this snapshot file")
	f.StringVar(&opts.SavePlan, "save-plan", "", "write the plan for a later nestbot apply --plan")
	f.StringSliceVar(&opts.Targets, "target", nil, "plan only these addresses and what they need (repeatable)")
	f.BoolVar(&opts.JSON, "json", false, "print the plan as JSON (--format json)")
	f.StringVar(&opts.Cloud.Endpoint, "aws-endpoint", "", "EC2 endpoint URL (default: the SDK's, or AWS_ENDPOINT_URL)")
	opts.Tailnet.register(cmd)
	f.StringVar(&opts.Format, "format", "text", "output format: text, markdown or json")
	f.StringVar(&opts.Out, "out", "", "write the plan to this file instead of standard output")
	f.StringVar(&opts.Revision, "revision", "", "the commit hosts roll to (default: the snapshot's repo.revision)")
	f.BoolVar(&opts.DetailedExitcode, "detailed-exitcode", false, "exit 2 when the plan has changes")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "markdown", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runPlan(ctx context.Context, opts *planOptions) error {
	if opts.JSON {
		if opts.Format != "text" && opts.Format != "json" {
			return fmt.Errorf("--json and --format %s: give one of them", opts.Format)
		}
		opts.Format = "json"
	}
	switch opts.Format {
	case "text", "markdown", "json":
	default:
		return fmt.Errorf("--format %q: use text, markdown or json", opts.Format)
	}
	// A saved snapshot is read while the repository is loaded: the two
	// are independent, and at thousands of hosts each is a good part of
	// the plan's time. The repository's error, if any, is the one shown.
	var live *reconcile.Live
	var liveErr error
	liveRead := make(chan struct{})
	if opts.Live != "" {
		go func() {
			defer close(liveRead)
			live, liveErr = readLive(opts.Live)
		}()
	} else {
		close(liveRead)
	}
	d, err := loadDesired(opts.File)
	<-liveRead
	if err != nil {
		return err
	}
	if opts.Live != "" {
		if liveErr != nil {
			return liveErr
		}
	} else {
		s, err := fleet.Observe(ctx, d, fleetOptions(opts.IO, opts.Cloud, opts.Tailnet))
		if err != nil {
			return err
		}
		s.Close()
		live = s.Live()
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
	if len(opts.Targets) > 0 {
		if plan, err = reconcile.Target(plan, opts.Targets); err != nil {
			return err
		}
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
	if opts.SavePlan != "" {
		// On standard error: standard output may be the plan as JSON.
		apply := "nestbot apply"
		if opts.File != "nest.yaml" {
			apply += " -f " + shellQuote(opts.File)
		}
		fmt.Fprintf(opts.IO.Err, "\nSaved the plan to %s. To apply exactly this plan:\n    %s --plan %s\n", opts.SavePlan, apply, shellQuote(opts.SavePlan))
	}
	if opts.DetailedExitcode && plan.HasChanges() {
		return &cli.ExitError{Code: 2}
	}
	return nil
}

// render formats a plan; colour only for a terminal, never with NO_COLOR
// or --no-color.
func render(io *IO, plan *reconcile.Plan, format string, toStdout bool) (bytes.Buffer, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case "text":
		color := toStdout && io.Color()
		err = reconcile.RenderText(&buf, plan, reconcile.TextOptions{Color: color})
	case "markdown":
		buf.WriteString(strings.Join(reconcile.RenderMarkdown(plan), "\n"))
	case "json":
		err = reconcile.RenderJSON(&buf, plan)
	}
	return buf, err
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func indentErr(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// readLive reads the live snapshot file --live names.
func readLive(path string) (*reconcile.Live, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read live snapshot: %w", err)
	}
	defer f.Close()
	return reconcile.DecodeLive(path, f)
}
