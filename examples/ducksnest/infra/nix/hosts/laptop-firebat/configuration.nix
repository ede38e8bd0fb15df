{ ... }:
{
  networking.hostName = "ducksnest-laptop-firebat";
  # Kubernetes worker; certificates under ../../secrets/certs/derived/laptop-firebat/
  services.kubernetes.roles = [ "node" ];
}
