package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
	"github.com/spf13/cobra"
)

// desired is nest.yaml plus what the repository holds beside it.
type desired struct {
	Fleet    *nest.Fleet
	HostKeys map[string]string
	Root     string // the directory holding nest.yaml: paths in it are relative to here
}

type planOptions struct {
	IO               *IO
	File             string
	Live             string
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

The live state is read from a snapshot (--live FILE), so any plan can be
reproduced offline. Exit codes: 0 success, 1 error, 2 success with changes
when --detailed-exitcode is given (as terraform plan).`,
		Args: cobra.NoArgs,
		Example: `  nestbot plan --live live.json
  nestbot plan -f examples/ducksnest/nest.yaml --live examples/ducksnest/live/empty.json
  nestbot plan --live live.json --format markdown --out plan.md
  nestbot plan --live live.json --format json | jq .summary`,
		RunE: func(*cobra.Command, []string) error { return runPlan(opts) },
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "file", "f", "nest.yaml", "the desired state")
	f.StringVar(&opts.Live, "live", "", "read the live state from this snapshot file")
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
	if opts.Live == "" {
		return errors.New("no live state: pass --live FILE, a snapshot of the live fleet (see examples/ducksnest/live/)")
	}
	live, err := reconcile.ReadLive(opts.Live)
	if err != nil {
		return err
	}
	plan, err := reconcile.Diff(reconcile.Desired{Fleet: d.Fleet, HostKeys: d.HostKeys}, live, reconcile.Options{Revision: opts.Revision})
	if err != nil {
		return fmt.Errorf("plan %s:\n%w", d.Fleet.Name, indentErr(err))
	}
	var buf bytes.Buffer
	switch opts.Format {
	case "text":
		color := opts.Out == "" && opts.IO.IsTerminal() && opts.IO.Getenv("NO_COLOR") == ""
		err = reconcile.RenderText(&buf, plan, reconcile.TextOptions{Color: color})
	case "markdown":
		buf.WriteString(strings.Join(reconcile.RenderMarkdown(plan), "\n"))
	case "json":
		err = reconcile.RenderJSON(&buf, plan)
	}
	if err != nil {
		return err
	}
	if opts.Out != "" {
		err = writeFileAtomic(opts.Out, buf.Bytes())
	} else {
		_, err = opts.IO.Out.Write(buf.Bytes())
	}
	if err != nil {
		return err
	}
	if opts.DetailedExitcode && plan.HasChanges() {
		return &exitError{code: 2}
	}
	return nil
}

func indentErr(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a reader never sees half a file and a failure leaves none.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
