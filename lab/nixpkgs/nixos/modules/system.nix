# The toplevel (nixos/modules/system/activation/top-level.nix) and
# nixos-version (nixos/modules/misc/version.nix,
# nixos/modules/installer/tools/nixos-version.sh).
{ config, lib, pkgs, ... }:
let
  b = builtins;
  cfg = config.system;
  nixos = cfg.nixos;
  # version.nix: configurationRevision is in the JSON only when set.
  versionJSON = b.toJSON ({ nixosVersion = nixos.version; }
    // lib.optionalAttrs (nixos.revision != null) { nixpkgsRevision = nixos.revision; }
    // lib.optionalAttrs (cfg.configurationRevision != null) { configurationRevision = cfg.configurationRevision; });
  subst = text: lib.replaceStrings
    [ "@version@" "@codeName@" "@revision@" "@configurationRevision@" "@json@" "@hostName@" ]
    [ nixos.version nixos.codeName (if nixos.revision == null then "" else nixos.revision)
      (if cfg.configurationRevision == null then "" else cfg.configurationRevision) versionJSON config.networking.hostName ]
    text;
  script = name: file: pkgs.writeScript name (subst (b.readFile file));
  systemPath = map (p: "/usr/bin/" + p) [ "systemctl" "systemd-run" "journalctl" "nix" "nix-build" "nix-env" "nix-store" "nix-daemon" "flock" "sudo" ];
  # By name, those with deps (activation-script.nix's textClosureMap) after
  # those without.
  scriptNames = b.sort (x: y: x < y) (b.attrNames cfg.activationScripts);
  hasDeps = n: let s = cfg.activationScripts.${n}; in !(b.isString s) && (s.deps or [ ]) != [ ];
  activationScripts = lib.concatMapStrings (n:
    let s = cfg.activationScripts.${n}; in
    "\n# ${n}\n" + (if b.isString s then s else s.text or "") + "\n")
    (lib.filter (n: !(hasDeps n)) scriptNames ++ lib.filter hasDeps scriptNames);
in
{
  networking.hostName = lib.mkOptionDefault "nixos";
  system.configurationRevision = lib.mkOptionDefault null;
  system.stateVersion = lib.mkOptionDefault "25.05";
  system.nixos = {
    release = lib.mkOptionDefault "25.05";
    codeName = lib.mkOptionDefault "Warbler";
    revision = lib.mkOptionDefault (lib.nixpkgsRevision or null);
    version = lib.mkOptionDefault ("25.05" + (lib.versionSuffix or ".00000000.dirty"));
  };
  system.activationScripts = lib.mkOptionDefault { };
  environment.systemPackages = lib.mkOptionDefault [ ];

  environment.etc."hostname".text = config.networking.hostName + "\n";
  # nixos/modules/config/networking.nix
  environment.etc."hosts".text = ''
    127.0.0.1 localhost
    ::1 localhost
    127.0.0.2 ${config.networking.hostName}
  '';
  environment.etc."os-release".text = ''
    ANSI_COLOR="1;34"
    BUILD_ID="${nixos.version}"
    ID=nixos
    NAME=NixOS
    PRETTY_NAME="NixOS ${nixos.release} (${nixos.codeName})"
    VERSION="${nixos.release} (${nixos.codeName})"
    VERSION_CODENAME=${lib.replaceStrings [ "W" ] [ "w" ] nixos.codeName}
    VERSION_ID="${nixos.release}"
  '';

  system.build.nixos-version = script "nixos-version" ../bin/nixos-version;
  system.build.nixos-rebuild = script "nixos-rebuild" ../bin/nixos-rebuild;

  # A real derivation: its store path changes exactly when the
  # configuration does (its etc, units, scripts, version data).
  system.build.toplevel = pkgs.runCommand "nixos-system-${config.networking.hostName}-${nixos.version}" {
    activate = subst (b.readFile ../bin/activate) + activationScripts + subst (b.readFile ../bin/activate-end);
    stc = b.readFile ../bin/switch-to-configuration;
    init = b.readFile ../bin/init;
    bootloader = b.readFile ../bin/install-bootloader;
    passAsFile = [ "activate" "stc" "init" "bootloader" ];
  } ''
    mkdir -p "$out/bin" "$out/sw/bin"
    ln -s ${config.system.build.etc} "$out/etc"
    ln -s ${config.system.build.nixos-version} "$out/sw/bin/nixos-version"
    ln -s ${config.system.build.nixos-rebuild} "$out/sw/bin/nixos-rebuild"
    # The system path (nixos/modules/config/system-path.nix): NixOS's
    # required packages (systemd, nix, util-linux, sudo's wrapper) are the
    # root image's programs here, and environment.systemPackages' bin/.
    for p in ${lib.concatStringsSep " " systemPath}; do ln -sf "$p" "$out/sw/bin/"; done
    for p in ${lib.concatMapStringsSep " " (p: "${p}") config.environment.systemPackages}; do
      [ -d "$p/bin" ] && for f in "$p"/bin/*; do ln -sf "$f" "$out/sw/bin/"; done
    done
    for f in activate:activate stc:bin/switch-to-configuration init:init bootloader:bin/install-bootloader; do
      eval "src=\$''${f%%:*}Path"
      sed "s|@out@|$out|g" "$src" >"$out/''${f#*:}"
      chmod 0555 "$out/''${f#*:}"
    done
    printf '%s' ${lib.escapeShellArg nixos.version} >"$out/nixos-version"
    ${lib.optionalString (cfg.configurationRevision != null) "printf '%s' ${lib.escapeShellArg cfg.configurationRevision} >\"$out/configuration-revision\""}
  '';
}
