package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/ducksnest/nestbot/internal/buildinfo"
)

// newManCmd writes the manual pages (cobra/doc): the release puts them
// in its archives, as goreleaser's own hidden "man" command does for it.
func newManCmd(io *IO) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write nestbot's manual pages (nestbot.1, nestbot-plan.1, ...) into DIR",
		Hidden: true,
		Example: `  nestbot man ./man && man ./man/nestbot-plan.1
  nestbot man /usr/local/share/man/man1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // the pages stay the same for the same source
			in := buildinfo.Read()
			header := &doc.GenManHeader{Section: "1", Source: "nestbot " + in.Version, Manual: "nestbot manual"}
			if t, err := time.Parse(time.RFC3339, in.Date); err == nil {
				header.Date = &t // the release's date, not the day the pages were made
			}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages in %s: %w", dir, err)
			}
			fmt.Fprintf(io.Err, "Wrote the manual pages to %s\n", dir)
			return nil
		},
	}
}
