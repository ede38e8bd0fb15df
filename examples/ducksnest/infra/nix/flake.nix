{
  description = "DucksNest: NixOS hosts managed by nestbot";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  inputs.agenix.url = "github:ryantm/agenix";

  outputs = { self, nixpkgs, agenix, ... }:
    let
      # nestbot ships the commit's tree to each host with a .nest-revision
      # file; a build from a git checkout uses the commit itself.
      revision = self.rev or (
        if builtins.pathExists ./.nest-revision
        then nixpkgs.lib.removeSuffix "\n" (builtins.readFile ./.nest-revision)
        else self.dirtyRev or null);
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
          # nixos-version --json reports this; nestbot compares it with the target commit.
          { system.configurationRevision = revision; }
        ];
      };
    in {
      nixosConfigurations = nixpkgs.lib.genAttrs
        [ "ec2-controlplane" "laptop-firebat" "laptop-ultra" ]
        mkHost;
    };
}
