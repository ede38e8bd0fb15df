# services.tailscale (nixos/modules/services/networking/tailscale.nix and
# tailscale's own cmd/tailscaled/tailscaled.service): tailscaled.service,
# with stopIfChanged = false, so a switch that changes it restarts it, and
# tailscaled-autoconnect.service when authKeyFile is set. The lab's hosts
# have no /dev/net/tun: interfaceName defaults to userspace-networking.
{ config, lib, ... }:
let
  cfg = config.services.tailscale;
in
{
  services.tailscale = {
    enable = lib.mkOptionDefault false;
    port = lib.mkOptionDefault 41641;
    interfaceName = lib.mkOptionDefault "userspace-networking";
    extraUpFlags = lib.mkOptionDefault [ ];
    extraDaemonFlags = lib.mkOptionDefault [ ];
    authKeyFile = lib.mkOptionDefault null;
  };
  systemd.services.tailscaled = lib.mkIf cfg.enable {
    description = "Tailscale node agent";
    wantedBy = [ "multi-user.target" ];
    after = [ "network-pre.target" ];
    wants = [ "network-pre.target" ];
    stopIfChanged = false;
    serviceConfig = {
      EnvironmentFile = "-/etc/default/tailscaled";
      ExecStart = "/usr/local/bin/tailscaled --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=${toString cfg.port} --tun ${cfg.interfaceName} ${lib.concatStringsSep " " cfg.extraDaemonFlags}";
      ExecStopPost = "/usr/local/bin/tailscaled --cleanup";
      Restart = "on-failure";
      RuntimeDirectory = "tailscale";
      RuntimeDirectoryMode = "0755";
      StateDirectory = "tailscale";
      StateDirectoryMode = "0700";
      CacheDirectory = "tailscale";
      CacheDirectoryMode = "0750";
      Type = "notify";
    };
  };
  systemd.services.tailscaled-autoconnect = lib.mkIf (cfg.enable && cfg.authKeyFile != null) {
    description = "Tailscale: connect with the auth key";
    after = [ "tailscaled.service" ];
    wants = [ "tailscaled.service" ];
    wantedBy = [ "multi-user.target" ];
    serviceConfig.Type = "oneshot";
    script = ''
      status=$(/usr/local/bin/tailscale status --json --peers=false | sed -n 's/.*"BackendState": *"\([^"]*\)".*/\1/p')
      if [ "$status" = NeedsLogin ] || [ "$status" = NoState ]; then
        /usr/local/bin/tailscale up --auth-key "file:${cfg.authKeyFile}" ${lib.escapeShellArgs cfg.extraUpFlags}
      fi
    '';
  };
}
