package main

import (
	"context"
	"fmt"
	goio "io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/internal/cli"
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

Nothing is fetched and no credentials are needed. It runs in a network
namespace of its own (root: the hosts are systemd-nspawn containers). The GitHub part needs the
webhook examples that bash .ci/fixtures installs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code, done, err := inOwnNetns(io); err != nil {
				return err
			} else if done {
				if code != 0 {
					return &cli.ExitError{Code: code}
				}
				return nil
			}
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
			s, err := d.Play(pctx)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if problems := s.Problems(); len(problems) > 0 {
				fmt.Fprintf(io.Out, "\nThe story did not come out as told:\n")
				for _, p := range problems {
					fmt.Fprintf(io.Out, "  step %s\n", p)
				}
				return fmt.Errorf("demo: %d of the story's steps did not come out as told", len(problems))
			}
			if !keep {
				return nil
			}
			fmt.Fprintf(io.Out, "\nThe lab stays up (--keep) until interrupted, in this process's own network namespace:\nenter it with nsenter --net=/proc/%d/ns/net, then, for nestbot there:\n\n", os.Getpid())
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
