# systemd.services (nixos/modules/system/boot/systemd.nix and
# systemd-lib.nix): each service a unit file in etc/systemd/system, linked
# into the .wants of its wantedBy targets; restartIfChanged and
# stopIfChanged become X-RestartIfChanged and X-StopIfChanged, which
# switch-to-configuration reads.
{ config, lib, pkgs, ... }:
let
  b = builtins;
  value = v: if b.isBool v then lib.boolToString v else toString v;
  lines = k: v: if b.isList v then lib.concatMapStrings (x: "${k}=${value x}\n") v else "${k}=${value v}\n";
  section = attrs: lib.concatStrings (lib.mapAttrsToList lines (lib.filterAttrs (_: v: v != null) attrs));
  words = xs: lib.concatStringsSep " " xs;
  unitText = name: s:
    let
      unit = lib.filterAttrs (_: v: v != [ ] && v != null) {
        Description = s.description or null;
        After = words (s.after or [ ]);
        Before = words (s.before or [ ]);
        Wants = words (s.wants or [ ]);
        Requires = words (s.requires or [ ]);
      } // (s.unitConfig or { })
      // lib.optionalAttrs (!(s.restartIfChanged or true)) { X-RestartIfChanged = false; }
      // lib.optionalAttrs (!(s.stopIfChanged or true)) { X-StopIfChanged = false; };
      env = lib.mapAttrsToList (k: v: "\"${k}=${toString v}\"") (s.environment or { });
      service = (lib.optionalAttrs (s ? script) { ExecStart = "${pkgs.writeShellScript "unit-script-${name}-start" s.script}"; })
        // (s.serviceConfig or { })
        // lib.optionalAttrs (env != [ ]) { Environment = env; };
    in
    "[Unit]\n" + section (lib.filterAttrs (_: v: v != "") unit) + "\n[Service]\n" + section service;
  services = lib.filterAttrs (_: s: s.enable or true) config.systemd.services;
in
{
  systemd.services = lib.mkOptionDefault { };
  environment.etc = lib.mkMerge (lib.mapAttrsToList (name: s:
    { "systemd/system/${name}.service".text = unitText name s; }
    // lib.listToAttrs (map (t: { name = "systemd/system/${t}.wants/${name}.service"; value.source = "../${name}.service"; }) (s.wantedBy or [ ])))
    services);
}
