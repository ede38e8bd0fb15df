# services.openssh (nixos/modules/services/networking/ssh/sshd.nix):
# /etc/ssh/sshd_config from settings, NixOS's defaults (password and
# keyboard-interactive logins on, PermitRootLogin prohibit-password, host
# keys rsa and ed25519), and sshd.service with KillMode=process and
# stopIfChanged = false, so a switch restarts sshd without cutting the
# sessions it serves.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.openssh;
  b = builtins;
  fmt = v: if b.isBool v then (if v then "yes" else "no") else if b.isList v then lib.concatStringsSep " " v else toString v;
  settings = lib.filterAttrs (_: v: v != null) cfg.settings;
in
{
  services.openssh = {
    enable = lib.mkOptionDefault false;
    ports = lib.mkOptionDefault [ 22 ];
    settings = {
      PasswordAuthentication = lib.mkOptionDefault true;
      KbdInteractiveAuthentication = lib.mkOptionDefault true;
      PermitRootLogin = lib.mkOptionDefault "prohibit-password";
      AllowUsers = lib.mkOptionDefault null;
      UseDns = lib.mkOptionDefault false;
      X11Forwarding = lib.mkOptionDefault false;
    };
    extraConfig = lib.mkOptionDefault "";
  };
  environment.etc."ssh/sshd_config" = lib.mkIf cfg.enable {
    text = ''
      UsePAM yes
      Banner none
      AddressFamily any
      ${lib.concatMapStrings (p: "Port ${toString p}\n") cfg.ports}
      ${lib.concatStrings (lib.mapAttrsToList (k: v: "${k} ${fmt v}\n") settings)}
      AuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
      HostKey /etc/ssh/ssh_host_rsa_key
      HostKey /etc/ssh/ssh_host_ed25519_key
      Subsystem sftp /usr/lib/openssh/sftp-server
      ${cfg.extraConfig}
    '';
  };
  systemd.services.sshd = lib.mkIf cfg.enable {
    description = "SSH Daemon";
    wantedBy = [ "multi-user.target" ];
    after = [ "network.target" ];
    stopIfChanged = false;
    serviceConfig = {
      ExecStart = "/usr/sbin/sshd -D -f /etc/ssh/sshd_config";
      KillMode = "process";
      Restart = "always";
      Type = "simple";
      RuntimeDirectory = "sshd";
      RuntimeDirectoryPreserve = "yes";
    };
  };
}
