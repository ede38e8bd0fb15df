# The stand-in's pkgs: builders NixOS modules use, and a few package names
# configurations list. Packages are Debian's programs in the hosts' root
# image: each stands for its namesake, and nothing builds it unless a
# configuration's toplevel refers to it.
{ lib, system }:
let
  b = builtins;
  # Builders run /bin/sh and coreutils of the host's root (no sandbox).
  path = "/usr/bin:/bin:/usr/sbin:/sbin";
  runCommand = name: env: buildCommand: b.derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-ec" buildCommand ];
    PATH = path;
  } // env);
  writeText = name: text: runCommand name { inherit text; passAsFile = [ "text" ]; } ''cp "$textPath" "$out"'';
  writeScript = name: text: runCommand name { inherit text; passAsFile = [ "text" ]; } ''cp "$textPath" "$out"; chmod 0555 "$out"'';
  writeShellScript = name: text: writeScript name "#!/bin/sh\n${text}";
  debian = name: bins: runCommand name { } (''mkdir -p "$out/bin"'' + lib.concatMapStrings (p: "\nln -s ${p} \"$out/bin/\"") bins);
in
{
  inherit system runCommand writeText writeScript writeShellScript;
  writeShellScriptBin = name: text: runCommand name { } ''mkdir -p "$out/bin"; ln -s ${writeShellScript name text} "$out/bin/${name}"'';
  stdenv = { hostPlatform.system = system; isLinux = true; };
  openssh = debian "openssh" [ "/usr/sbin/sshd" "/usr/bin/ssh" "/usr/bin/ssh-keygen" ];
  tailscale = debian "tailscale" [ "/usr/local/bin/tailscaled" "/usr/local/bin/tailscale" ];
  age = debian "age" [ "/usr/bin/age" ];
  git = debian "git" [ "/usr/bin/git" ];
  coreutils = debian "coreutils" [ "/usr/bin/ls" ];
  bash = debian "bash" [ "/bin/bash" ];
  sudo = debian "sudo" [ "/usr/bin/sudo" ];
  openssl = debian "openssl" [ "/usr/bin/openssl" ];
  vim = debian "vim" [ "/usr/bin/vi" ];
  htop = debian "htop" [ "/usr/bin/top" ];
  curl = debian "curl" [ "/usr/bin/true" ];
  jq = debian "jq" [ "/usr/bin/true" ];
  kubernetes = debian "kubernetes" [ "/usr/bin/true" ];
}
