package main

import (
	"context"
	"fmt"
	goio "io"
	"log"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/lab/demo"
)

func newDemoCmd(io *IO) *cobra.Command {
	var keep, verbose bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the whole story in a lab on this machine: pull requests planned, merges applied",
		Long: `Demo starts the lab in this process — an EC2 endpoint, a tailnet with
simulated NixOS hosts, a GitHub — with the DucksNest fleet as a repository, and
nestbot serve taking its webhook. Then, narrating as it goes:

  1. nestbot applies the default branch once: the VPC, the control plane
     instance, the certificates (committed back), every host rolled;
  2. a pull request adds ec2-worker-1: its plan comment; on merge the
     instance is created, boots, joins the tailnet with a key minted for it,
     its host key is pinned, its certificates are issued and committed, and
     every host rolls in order;
  3. a pull request changes one host's configuration: only it rolls;
  4. a pull request breaks a host: it is rolled back, the rollout halts and
     the deployment is marked failed;
  5. a table of every host, its revision and its certificates' expiry.

Nothing is fetched and no credentials are needed. The GitHub part needs the
webhook examples that bash .ci/fixtures installs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o := demo.Options{Out: io.Out}
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(io.Err, nil))
			} else {
				log.SetOutput(goio.Discard) // the lab's servers log through the standard logger
			}
			d, err := demo.Start(ctx, o)
			if err != nil {
				return err
			}
			defer d.Close()
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, err := d.Play(pctx); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if !keep {
				return nil
			}
			fmt.Fprintf(io.Out, "\nThe lab stays up (--keep) until interrupted. Its environment, for nestbot in another shell:\n\n")
			for _, kv := range d.Lab.Env() {
				fmt.Fprintf(io.Out, "  %s\n", kv)
			}
			fmt.Fprintf(io.Out, "\n  nestbot serve's webhook: %s\n  the repository: git clone %s\n", d.Webhook, d.GitHub.CloneURL(d.Repo.Owner, d.Repo.Name))
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the lab up afterwards and print its addresses")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print what the lab and nestbot log")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "give up when the story takes longer")
	return cmd
}
