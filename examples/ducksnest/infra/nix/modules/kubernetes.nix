# The certificates nestbot issues live under ../secrets/certs, each private
# key age-encrypted to the host's SSH host key: agenix decrypts it on the
# host, and the Kubernetes components serve them. A certificate not issued
# yet is left out, so a fresh checkout builds.
{ config, lib, ... }:
let
  name = config.nest.host;
  dir = ../secrets/certs/derived + "/${name}";
  leaf = stem: { crt = dir + "/${stem}.crt"; key = dir + "/${stem}.key.age"; };
  has = l: builtins.pathExists l.crt && builtins.pathExists l.key;
  secret = stem: l: lib.mkIf (has l) { ${stem}.file = l.key; };
  apiserver = leaf "kubernetes-apiserver";
  etcd = leaf "etcd-server";
  kubelet = leaf "kubernetes-kubelet-serving";
in
{
  options.nest.host = lib.mkOption {
    type = lib.types.str;
    description = "The host's name in nest.yaml (its flake attribute).";
  };
  config.age.secrets = lib.mkMerge [
    (secret "kubernetes-apiserver" apiserver)
    (secret "etcd-server" etcd)
    (secret "kubernetes-kubelet-serving" kubelet)
  ];
  config.services.kubernetes.apiserver = lib.mkIf (has apiserver) {
    tlsCertFile = apiserver.crt;
    tlsKeyFile = "/run/agenix/kubernetes-apiserver";
  };
  config.services.etcd = lib.mkIf (has etcd) {
    certFile = etcd.crt;
    keyFile = "/run/agenix/etcd-server";
  };
  config.services.kubernetes.kubelet = lib.mkIf (has kubelet) {
    tlsCertFile = kubelet.crt;
    tlsKeyFile = "/run/agenix/kubernetes-kubelet-serving";
  };
}
