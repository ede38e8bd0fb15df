// Command nestbot keeps a fleet of NixOS hosts — in AWS and on-prem, joined
// by a tailnet, running Kubernetes with its own PKI — in the state its git
// repository describes. This file only wires the command line; every verb is
// a thin call into a package.
package main

import (
	"os"
	"strings"

	"github.com/ducksnest/nestbot/internal/buildinfo"
	"github.com/ducksnest/nestbot/internal/cli"
	"github.com/ducksnest/nestbot/internal/logs"
	"github.com/spf13/cobra"
)

// IO is where a command reads and writes; tests swap it.
type IO = cli.IO

func main() { os.Exit(run(cli.StdIO(), os.Args[1:])) }

// run executes the command line and returns the process exit code.
func run(io *IO, args []string) int { return cli.Run(io, newRootCmd(io), args) }

func newRootCmd(io *IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "nestbot",
		Short: "GitOps for a NixOS fleet: cloud, tailnet, certificates and rollout from one repository",
		Long: `nestbot keeps a fleet of NixOS hosts in the state its git repository describes.

It reads nest.yaml, observes the live fleet (AWS, the tailnet, the hosts, the
certificates), and plans or applies the difference, plane by plane.

Every flag can also be set with an environment variable NESTBOT_<FLAG>
(upper case, dashes as underscores); a flag given on the command line wins.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := cli.BindEnv(cmd, io.Getenv); err != nil {
				return err
			}
			return io.CheckLog()
		},
	}
	cli.Conventions(io, root)
	root.PersistentFlags().StringVar(&io.LogFormat, "log-format", logs.FormatAuto, "the format of the log on standard error: auto (json unless standard error is a terminal), text or json")
	root.PersistentFlags().StringVar(&io.LogLevel, "log-level", "info", "the least level logged: "+strings.Join(logs.Levels, ", ")+" (debug adds each GitHub request)")
	// nestbot --version prints what nestbot version does. It is nestbot's
	// own flag, not cobra's: cobra prints its version through a
	// text/template, and a program that links text/template keeps every
	// exported method of every type it puts in an interface (the EC2
	// client's 600 alone are 25 MB of code; TestShippedBinarySize).
	var showVersion bool
	root.Flags().BoolVarP(&showVersion, "version", "v", false, "print the version, commit, build date and Go version")
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if !showVersion {
			return cmd.Help()
		}
		writeVersion(io.Out, buildinfo.Read())
		return nil
	}
	root.AddCommand(
		newValidateCmd(io),
		newPlanCmd(io),
		newApplyCmd(io),
		newCertsCmd(io),
		newHostsCmd(io),
		newRolloutCmd(io),
		newServeCmd(io),
		newActionCmd(io),
		newDriftCmd(io),
		newAdoptCmd(io),
		newSchemaCmd(io),
		newVersionCmd(io),
		newManCmd(io),
	)
	return root
}
