# The lab's stand-in for nixpkgs: what a NixOS flake needs of it offline.
#
# lib.nixosSystem evaluates the modules (imports, mkIf, mkDefault, mkForce,
# mkMerge, lists concatenated, attribute sets merged) into a real
# derivation built by real nix: config.system.build.toplevel holds
# bin/switch-to-configuration, activate, init, nixos-version,
# etc/ (with etc/systemd/system/*.service for the units the configuration
# declares) and sw/bin/. Only the options below mean something; any other
# is accepted and ignored, as the real nixpkgs would act on it:
#
#   networking.hostName, system.configurationRevision, system.nixos.*,
#   services.openssh.{enable,settings.*,ports}, services.tailscale.{enable,
#   extraUpFlags,authKeyFile,port}, users.users.<n>.{isNormalUser,
#   extraGroups,openssh.authorizedKeys.keys,hashedPassword,home},
#   users.groups, security.sudo.{enable,wheelNeedsPassword,extraRules,
#   extraConfig}, systemd.services.<n>.{description,wantedBy,after,wants,
#   requires,serviceConfig,script,environment,restartIfChanged,
#   stopIfChanged,unitConfig}, environment.etc.<path>.{text,source,mode},
#   system.activationScripts.<n>, age.secrets (with the agenix stand-in),
#   services.kubernetes.{roles,apiserver.tlsCertFile/tlsKeyFile,
#   kubelet.tlsCertFile/tlsKeyFile}, services.etcd.{certFile,keyFile}.
#
# The sources followed: nixos/modules/system/activation/top-level.nix,
# switch-to-configuration-ng, nixos-rebuild-ng, nixos/modules/misc/version.nix,
# nixos/modules/services/networking/ssh/sshd.nix and tailscale.nix,
# nixos/modules/security/sudo.nix, lib/modules.nix (the merge rules).
{
  description = "nestbot lab: a stand-in for nixpkgs";

  outputs = { self }: {
    lib = import ./lib { nixpkgs = self; };
  };
}
