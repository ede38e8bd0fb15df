# users.users and users.groups (nixos/modules/config/users-groups.nix):
# activation makes the accounts (update-users-groups.pl's job, here with
# useradd and usermod); authorized keys go to
# /etc/ssh/authorized_keys.d/<user>, which NixOS's sshd reads.
{ config, lib, ... }:
let
  users = config.users.users;
  groupsOf = u: lib.unique ((u.extraGroups or [ ]) ++ lib.optional (u ? group) u.group);
  allGroups = lib.unique (lib.attrNames config.users.groups ++ lib.concatMap groupsOf (lib.attrValues users));
  esc = lib.escapeShellArg;
in
{
  users.users.root = lib.mkOptionDefault { };
  users.groups = lib.mkOptionDefault { };
  environment.etc = lib.mkMerge (lib.mapAttrsToList (n: u:
    lib.optionalAttrs ((u.openssh.authorizedKeys.keys or [ ]) != [ ]) {
      "ssh/authorized_keys.d/${n}" = { text = lib.concatMapStrings (k: k + "\n") u.openssh.authorizedKeys.keys; mode = "0444"; };
    }) users);
  system.activationScripts.users = ''
    ${lib.concatMapStrings (g: "getent group ${esc g} >/dev/null || groupadd ${esc g}\n") allGroups}
    ${lib.concatStrings (lib.mapAttrsToList (n: u: lib.optionalString (n != "root") ''
      if ! getent passwd ${esc n} >/dev/null; then
        useradd ${lib.optionalString (u.isNormalUser or false) "-m"} -d ${esc (u.home or "/home/${n}")} -s /bin/bash ${esc n}
      fi
      usermod -G ${esc (lib.concatStringsSep "," (groupsOf u))} ${esc n} 2>/dev/null || usermod -G "" ${esc n}
    '' + lib.optionalString (u ? hashedPassword) ''
      usermod -p ${esc u.hashedPassword} ${esc n}
    '') users)}
  '';
}
