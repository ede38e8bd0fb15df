# age.secrets.<name> = { file; path ? "/run/agenix/<name>"; mode ? "0400";
# owner ? "root"; group ? "root"; }, decrypted with age.identityPaths
# (the host's /etc/ssh/ssh_host_ed25519_key by default). As agenix's
# modules/age.nix does ("${secretType.file}", the option a types.path), a
# file given as a path is copied into the store on its own, by its content:
# the system changes when the encrypted file does, not when anything else in
# the flake's source does.
{ config, lib, ... }:
let
  cfg = config.age;
  esc = lib.escapeShellArg;
  ids = lib.concatMapStringsSep " " (p: "-i ${esc p}") cfg.identityPaths;
in
{
  age.secrets = lib.mkOptionDefault { };
  age.identityPaths = lib.mkOptionDefault [ "/etc/ssh/ssh_host_ed25519_key" ];
  system.activationScripts.agenix = ''
    mkdir -p /run/agenix
    chmod 0751 /run/agenix
    ${lib.concatStrings (lib.mapAttrsToList (n: s:
      let path = s.path or "/run/agenix/${n}"; in ''
        mkdir -p "$(dirname ${esc path})"
        if age -d ${ids} -o ${esc path}.tmp ${esc "${s.file}"}; then
          chmod ${esc (s.mode or "0400")} ${esc path}.tmp
          chown ${esc (s.owner or "root")}:${esc (s.group or "root")} ${esc path}.tmp
          mv -f ${esc path}.tmp ${esc path}
        else
          echo "agenix: cannot decrypt ${n}" >&2
        fi
      '') cfg.secrets)}
  '';
}
