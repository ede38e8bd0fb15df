# The lab's stand-in for agenix (github:ryantm/agenix): nixosModules.default
# (and .age) decrypt age.secrets at activation with the age CLI and the
# host's SSH key, into /run/agenix/<name>, as agenix's modules/age.nix does.
{
  description = "nestbot lab: a stand-in for agenix";
  outputs = { self }: {
    nixosModules.default = import ./modules/age.nix;
    nixosModules.age = import ./modules/age.nix;
  };
}
