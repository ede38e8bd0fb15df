package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/internal/cli"
	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
)

func newUpCmd(io *IO) *cobra.Command {
	var envFile, file, webhookURL string
	var withGitHub bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab and print the environment that points nestbot at it",
		Long: `Up starts, on loopback, an EC2 endpoint that speaks the real EC2 Query
protocol (checked with SigV4 against the lab's static credentials), seeded with
the images and instance profiles nest.yaml names; a tailnet (tailscale's own
control and DERP servers, and a stand-in for the Tailscale API) with the
on-prem hosts of nest.yaml on it, each a simulated NixOS host reached over
Tailscale SSH; and with --github, a GitHub that checks every request against
GitHub's OpenAPI description, holding nest.yaml's directory as the repository
ducksnest/infra, whose webhook delivers to nestbot serve. It prints KEY=VALUE lines
(and writes them to --env-file) that, sourced into another shell, point every
other verb at the lab, and runs until interrupted.`,
		Args: cobra.NoArgs,
		Example: `  nestlab up -f examples/ducksnest/nest.yaml --env-file lab.env &
  set -a; . ./lab.env; set +a
  nestbot plan -f examples/ducksnest/nest.yaml

  nestlab up -f examples/ducksnest/nest.yaml --github --env-file lab.env &
  set -a; . ./lab.env; set +a
  nestbot serve &
  nestlab pr open --branch more-swap infra/nix/hosts/laptop-ultra/swap.nix='{ }'
  nestlab pr show 1 --wait plan`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fleet *nest.Fleet
			if _, err := os.Stat(file); err == nil {
				f, err := nest.Load(file)
				if err != nil {
					return err
				}
				fleet = f
			}
			o := lab.Options{Fleet: fleet}
			if withGitHub {
				o.GitHub = &lab.GitHubOptions{FromDir: filepath.Dir(file), WebhookURL: webhookURL}
			}
			l, err := lab.Up(o)
			if err != nil {
				return err
			}
			defer l.Close()
			vars := l.Env()
			if l.GitHub != nil {
				url, err := l.GitHub.ServeControl()
				if err != nil {
					return err
				}
				vars = append(vars, "NESTBOT_LAB_URL="+url)
			}
			env := strings.Join(vars, "\n") + "\n"
			if envFile != "" {
				if err := cli.WriteFileAtomic(envFile, []byte(env)); err != nil {
					return err
				}
			}
			fmt.Fprint(io.Out, env)
			fmt.Fprintln(io.Err, "lab is up; interrupt (Ctrl-C) to stop it")
			<-cmd.Context().Done()
			if envFile != "" {
				os.Remove(envFile)
			}
			return nil
		},
	}
	up.Flags().StringVar(&envFile, "env-file", "", "also write the KEY=VALUE lines to this file")
	up.Flags().StringVarP(&file, "file", "f", "nest.yaml", "seed the lab with what this nest.yaml expects to exist (if present)")
	up.Flags().BoolVar(&withGitHub, "github", false, "also start the lab's GitHub, with nest.yaml's directory as the repository ducksnest/infra")
	up.Flags().StringVar(&webhookURL, "webhook-url", "http://127.0.0.1:8080/webhook", "with --github: where the repository's webhook delivers (nestbot serve)")
	return up
}
