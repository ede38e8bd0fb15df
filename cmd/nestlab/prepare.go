package main

import (
	"fmt"
	"log"

	"github.com/spf13/cobra"

	"github.com/ducksnest/nestbot/lab/host"
)

func newPrepareCmd(io *IO) *cobra.Command {
	return &cobra.Command{
		Use:   "prepare",
		Short: "Build, once, what the lab's hosts are made of: the root image, tailscaled, their nix store",
		Long: `Prepare builds into the lab's cache (/var/cache/nestlab, or NESTLAB_CACHE)
what every lab host shares, unless it is there already: a Debian bookworm root
made by mmdebstrap from Debian's packages (systemd, openssh-server, sudo,
nix-bin, ...), tailscaled built from the tailscale.com module nestbot pins, and
the hosts' nix store holding the stand-in nixpkgs and agenix flakes. up and
demo do the same on their first run; prepare does it ahead, as CI does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := host.NeedRoot(); err != nil {
				return fmt.Errorf("nestlab prepare: %w", err)
			}
			ctx := cmd.Context()
			logf := log.New(io.Err, "", 0).Printf
			image, err := host.Image(ctx, logf)
			if err != nil {
				return err
			}
			tsd, err := host.Tailscaled(ctx, logf)
			if err != nil {
				return err
			}
			store, inputs, err := host.StoreDir(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(io.Out, "root image  %s\ntailscaled  %s\nnix store   %s\n", image, tsd, store)
			for _, in := range inputs {
				fmt.Fprintf(io.Out, "  %-8s %s (%s)\n", in.Name, in.StorePath, in.NarHash)
			}
			return nil
		},
	}
}
