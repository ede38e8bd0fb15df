{
  description = "DucksNest: NixOS hosts managed by nestbot";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  inputs.agenix.url = "github:ryantm/agenix";

  outputs = { self, nixpkgs, agenix, ... }:
    let
      # A host's flake attribute is its name in nest.yaml; its
      # networking.hostName (hosts/<name>/configuration.nix) is another.
      mkHost = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          agenix.nixosModules.default
          ./modules/common.nix
          ./modules/kubernetes.nix
          ./hosts/${name}/configuration.nix
          { nest.host = name; }
          # No system.configurationRevision: it would change every host's
          # system at every commit, so every host would roll each time.
          # nestbot records the commit a host runs (/var/lib/nestbot/deployed).
        ];
      };
    in {
      nixosConfigurations = nixpkgs.lib.genAttrs
        [ "ec2-controlplane" "laptop-firebat" "laptop-ultra" ]
        mkHost;
    };
}
