# environment.etc (nixos/modules/system/etc/etc.nix): one derivation
# holding every file; activation links /etc/<path> to /etc/static/<path>,
# or copies it when a mode is given (sudoers, as NixOS does). A source
# given as a path is copied into the store on its own ("${etcEntry.source}"
# in etc.nix), so the system depends on that file, not the whole flake.
{ config, lib, pkgs, ... }:
let
  b = builtins;
  entries = lib.filter (e: e.enable or true) (lib.mapAttrsToList (n: v: v // { target = v.target or n; }) config.environment.etc);
  indexed = lib.genList' entries;
  line = i: e:
    let t = lib.escapeShellArg e.target; in
    ''mkdir -p "$(dirname "$out/"${t})"'' + "\n" +
    (if e ? text then ''cp "$etc${toString i}Path" "$out/"${t}''
     else ''ln -s ${lib.escapeShellArg "${e.source}"} "$out/"${t}'') + "\n" +
    lib.optionalString (e ? mode && e.mode != "symlink") ''printf '%s\n' ${lib.escapeShellArg e.mode} >"$out/"${t}.mode'' + "\n";
  texts = lib.listToAttrs (lib.concatMap (x: lib.optional (x.e ? text) { name = "etc${toString x.i}"; value = x.e.text; }) indexed);
in
{
  environment.etc = lib.mkOptionDefault { };
  system.build.etc = pkgs.runCommand "etc" (texts // { passAsFile = b.attrNames texts; })
    (''mkdir -p "$out"'' + "\n" + lib.concatMapStrings (x: line x.i x.e) indexed);
}
