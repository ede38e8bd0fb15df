package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/internal/buildinfo"
)

func newVersionCmd(io *IO) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print nestbot's version, commit, build date and Go version",
		Long: `Version prints which nestbot this is: the release's version, commit and
date (stamped by the release build), or for a binary built from source what
Go recorded (the module version, the git commit and its time), and the Go
version and platform it was built with. nestbot --version prints the same.`,
		Example: `  nestbot version
  nestbot version --json | jq -r .commit`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			in := buildinfo.Read()
			if asJSON {
				enc := json.NewEncoder(io.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			return writeVersion(io.Out, in)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build information as JSON")
	return cmd
}

// writeVersion prints the build information, one field a line.
func writeVersion(w io.Writer, in buildinfo.Info) error {
	var b strings.Builder
	fmt.Fprintf(&b, "nestbot %s\n", in.Version)
	switch {
	case in.Commit == "":
		b.WriteString("  commit  unknown (built without git information)\n")
	case in.Modified:
		fmt.Fprintf(&b, "  commit  %s, with local changes\n", in.Commit)
	default:
		fmt.Fprintf(&b, "  commit  %s\n", in.Commit)
	}
	if in.Date != "" {
		fmt.Fprintf(&b, "  date    %s\n", in.Date)
	}
	fmt.Fprintf(&b, "  go      %s %s\n", in.GoVersion, in.Platform)
	_, err := io.WriteString(w, b.String())
	return err
}
