{
  description = "DucksNest: NixOS hosts managed by nestbot";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  inputs.agenix.url = "github:ryantm/agenix";

  outputs = { self, nixpkgs, agenix, ... }:
    let
      mkHost = name: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          agenix.nixosModules.default
          ./modules/common.nix
          ./hosts/${name}/configuration.nix
          # nixos-version --json reports this; nestbot compares it with the target commit.
          { system.configurationRevision = self.rev or self.dirtyRev or null; }
        ];
      };
    in {
      nixosConfigurations = nixpkgs.lib.genAttrs
        [ "ec2-controlplane" "laptop-firebat" "laptop-ultra" ]
        mkHost;
    };
}
