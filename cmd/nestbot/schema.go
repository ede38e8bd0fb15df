package main

import (
	"fmt"

	"github.com/ducksnest/nestbot/nest"
	"github.com/spf13/cobra"
)

func newSchemaCmd(io *IO) *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of nest.yaml (for editors), or the key reference",
		Args:  cobra.NoArgs,
		Example: `  nestbot schema > nest.schema.json
  nestbot schema --markdown`,
		RunE: func(*cobra.Command, []string) error {
			if markdown {
				_, err := fmt.Fprint(io.Out, nest.Reference())
				return err
			}
			_, err := io.Out.Write(nest.Schema())
			return err
		},
	}
	cmd.Flags().BoolVar(&markdown, "markdown", false, "print the Markdown table of every key instead")
	return cmd
}
