// Package agenix holds the lab's stand-in for the agenix flake (see
// flake.nix), for the lab to put into its hosts' nix store.
package agenix

import "embed"

// Source is the flake's tree.
//
//go:embed flake.nix modules
var Source embed.FS
