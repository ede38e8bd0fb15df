{ ... }:
{
  networking.hostName = "ducksnest-ec2-controlplane";
  # Kubernetes control-plane; certificates under ../../secrets/certs/derived/ec2-controlplane/
  services.kubernetes.roles = [ "master" ];
}
