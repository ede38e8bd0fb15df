// Package nixpkgs holds the lab's stand-in for the nixpkgs flake (see
// flake.nix), for the lab to put into its hosts' nix store.
package nixpkgs

import "embed"

// Source is the flake's tree.
//
//go:embed flake.nix lib nixos pkgs
var Source embed.FS
