// Package nix holds nestbot's NixOS module (module.nix, the flake's
// nixosModules.default) and the sudo commands it allows the deploy user
// (sudo-commands.json, written from rollout.SudoCommands by go test
// ./nix -update-sudo), for the lab to put into its hosts' flakes.
package nix

import "embed"

// Module is module.nix and sudo-commands.json, which it reads.
//
//go:embed module.nix sudo-commands.json
var Module embed.FS
