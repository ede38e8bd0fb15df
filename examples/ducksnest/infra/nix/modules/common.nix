{ ... }:
{
  # As the DucksNest hosts run: Tailscale, and OpenSSH for the admins only,
  # keys only, no root; the admins use sudo with their password.
  services.tailscale.enable = true;
  services.openssh = {
    enable = true;
    settings = {
      PermitRootLogin = "no";
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      AllowUsers = [ "duck" "oriduckduck" "remoteduckduck" ];
    };
  };
  users.users.duck = { isNormalUser = true; extraGroups = [ "wheel" ]; };
  users.users.oriduckduck = { isNormalUser = true; extraGroups = [ "wheel" ]; };
  users.users.remoteduckduck = { isNormalUser = true; extraGroups = [ "wheel" ]; };
  security.sudo.wheelNeedsPassword = true;
}
