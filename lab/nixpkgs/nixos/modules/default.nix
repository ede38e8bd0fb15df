# NixOS's modules, as far as the lab's hosts need them.
{
  imports = [
    ./system.nix
    ./etc.nix
    ./systemd.nix
    ./users.nix
    ./sudo.nix
    ./openssh.nix
    ./tailscale.nix
    ./kubernetes.nix
  ];
}
