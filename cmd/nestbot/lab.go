package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/lab"
	"github.com/ducksnest/nestbot/nest"
)

func newLabCmd(io *IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run stand-ins for AWS (and, later, the tailnet, hosts and GitHub) on loopback",
	}
	var envFile, file string
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab and print the environment that points nestbot at it",
		Long: `Lab up starts, on loopback, an EC2 endpoint that speaks the real EC2 Query
protocol (checked with SigV4 against the lab's static credentials), seeded with
the images and instance profiles nest.yaml names. It prints KEY=VALUE lines
(and writes them to --env-file) that, sourced into another shell, point every
other verb at the lab, and runs until interrupted.`,
		Args: cobra.NoArgs,
		Example: `  nestbot lab up --env-file lab.env &
  set -a; . ./lab.env; set +a
  nestbot plan -f examples/ducksnest/nest.yaml`,
		RunE: func(*cobra.Command, []string) error {
			var fleet *nest.Fleet
			if _, err := os.Stat(file); err == nil {
				f, err := nest.Load(file)
				if err != nil {
					return err
				}
				fleet = f
			}
			l, err := lab.Up(lab.Options{Fleet: fleet})
			if err != nil {
				return err
			}
			defer l.Close()
			env := strings.Join(l.Env(), "\n") + "\n"
			if envFile != "" {
				if err := writeFileAtomic(envFile, []byte(env)); err != nil {
					return err
				}
			}
			fmt.Fprint(io.Out, env)
			fmt.Fprintln(io.Err, "lab is up; interrupt (Ctrl-C) to stop it")
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			if envFile != "" {
				os.Remove(envFile)
			}
			return nil
		},
	}
	up.Flags().StringVar(&envFile, "env-file", "", "also write the KEY=VALUE lines to this file")
	up.Flags().StringVarP(&file, "file", "f", "nest.yaml", "seed the lab with what this nest.yaml expects to exist (if present)")
	cmd.AddCommand(up)
	return cmd
}
