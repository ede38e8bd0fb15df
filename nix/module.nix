# nestbot's NixOS module: makes a host deployable by nestbot.
#
#   imports = [ nestbot.nixosModules.default ];
#   services.nestbot = { enable = true; flake = self;
#     authorizedKeys = [ "ssh-ed25519 AAAA… nestbot" ]; };
#
# With login "openssh" (the default) it makes the deploy user (user,
# default nestbot) with nestbot's public key, in systemd-journal (so
# nestbot can show a failed unit's log), and gives it the NOPASSWD sudo
# rules nestbot's root commands need (sudo-commands.json, written from
# nestbot's own list: rollout.SudoCommands). If sshd has AllowUsers, add
# the deploy user there. With login "tailscale" it turns on Tailscale SSH
# (tailscale up --ssh, and tailscale set --ssh for a node that is already
# up); the tailnet policy's ssh rule must let nestbot's tag in as root.
# Either way it creates /var/lib/nestbot, where nestbot keeps the commits it
# ships and records the one it deployed, puts git on the system path (nix
# reads the shipped commit with it), and, given the flake, sets
# system.configurationRevision from it.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.nestbot;
  enable = cfg.enable or false;
  login = cfg.login or "openssh";
  user = cfg.user or (if login == "tailscale" then "root" else "nestbot");
  flake = cfg.flake or null;
  deployUser = user != "root";
  stateDir = "/var/lib/nestbot";
  commands = builtins.fromJSON (builtins.readFile ./sudo-commands.json);
in
{
  options.services.nestbot = {
    enable = lib.mkEnableOption "rollouts by nestbot on this host";
    login = lib.mkOption {
      type = lib.types.enum [ "openssh" "tailscale" ];
      default = "openssh";
      description = "How nestbot logs in: over the host's sshd as the deploy user, or with Tailscale SSH as root. Must match rollout.ssh.via (or hosts.<name>.ssh.via) in nest.yaml.";
    };
    user = lib.mkOption {
      type = lib.types.str;
      default = if cfg.login == "tailscale" then "root" else "nestbot";
      description = "The user nestbot logs in as; a user other than root gets the sudo rules. Must match rollout.ssh.user in nest.yaml.";
    };
    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "nestbot's SSH public key(s), for the deploy user's authorized_keys (the public half of rollout.ssh.key).";
    };
    flake = lib.mkOption {
      type = lib.types.nullOr lib.types.raw;
      default = null;
      description = "The host's flake (self), to set system.configurationRevision from its rev.";
    };
  };

  config = lib.mkIf enable {
    users.users = lib.optionalAttrs deployUser {
      ${user} = {
        isNormalUser = true;
        extraGroups = [ "systemd-journal" ];
        openssh.authorizedKeys.keys = cfg.authorizedKeys or [ ];
      };
    };
    security.sudo.extraRules = lib.optional deployUser {
      users = [ user ];
      runAs = "root";
      commands = map (command: { inherit command; options = [ "NOPASSWD" ]; }) commands;
    };
    services.openssh = lib.mkIf (login == "openssh") { enable = true; };
    services.tailscale = lib.mkIf (login == "tailscale") {
      enable = true;
      extraUpFlags = [ "--ssh" ];
      extraSetFlags = [ "--ssh" ];
    };
    environment.systemPackages = [ pkgs.git ];
    system.activationScripts.nestbot = {
      deps = [ "users" ];
      text = ''
        install -d -m 0755 -o ${user} ${stateDir} ${stateDir}/run
      '';
    };
    system.configurationRevision = lib.mkIf (flake != null) (lib.mkDefault (flake.rev or flake.dirtyRev or null));
  };
}
