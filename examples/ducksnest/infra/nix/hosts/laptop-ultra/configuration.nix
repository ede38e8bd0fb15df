{ ... }:
{
  networking.hostName = "ducksnest-laptop-ultra";
  # Kubernetes worker; certificates under ../../secrets/certs/derived/laptop-ultra/
  services.kubernetes.roles = [ "node" ];
}
