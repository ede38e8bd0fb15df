{ ... }:
{
  services.tailscale.enable = true;
  services.openssh.enable = true;
  # Certificates nestbot issues live under ../secrets/certs; each private key is
  # age-encrypted to the host's SSH host key, so agenix decrypts it on the host.
}
