# nestbot's flake: the NixOS module that makes a host deployable by
# nestbot (nix/module.nix). A host's flake takes it as an input:
#
#   inputs.nestbot.url = "github:ducksnest/nestbot";
#   modules = [ nestbot.nixosModules.default
#     { services.nestbot = { enable = true; flake = self; authorizedKeys = [ "ssh-ed25519 AAAA… nestbot" ]; }; } ];
{
  description = "nestbot: GitOps for a NixOS fleet";

  outputs = { self }: {
    nixosModules.default = import ./nix/module.nix;
    nixosModules.nestbot = self.nixosModules.default;
  };
}
