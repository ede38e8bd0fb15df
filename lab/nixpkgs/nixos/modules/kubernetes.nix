# services.kubernetes and services.etcd, as far as the lab needs them: the
# serving endpoints, each a unit that answers TLS with its certificate on
# its port (kube-apiserver 6443, etcd 2379, kubelet 10250), so that a
# probe reads which certificate a generation serves. The option names are
# nixpkgs' (nixos/modules/services/cluster/kubernetes/{apiserver,kubelet}.nix,
# services/databases/etcd.nix); the server is openssl s_server, standing in
# for the components. A unit is declared only when its certificate is set,
# and it changes exactly when the certificate's file does.
{ config, lib, ... }:
let
  k = config.services.kubernetes;
  serve = desc: port: cert: key: {
    description = desc;
    wantedBy = [ "multi-user.target" ];
    after = [ "network.target" ];
    serviceConfig = {
      ExecStart = "/usr/bin/openssl s_server -quiet -accept ${toString port} -cert ${cert} -key ${key}";
      Restart = "always";
      RestartSec = "1";
    };
  };
  has = role: lib.elem role k.roles;
in
{
  services.kubernetes = {
    roles = lib.mkOptionDefault [ ];
    apiserver.tlsCertFile = lib.mkOptionDefault null;
    apiserver.tlsKeyFile = lib.mkOptionDefault null;
    kubelet.tlsCertFile = lib.mkOptionDefault null;
    kubelet.tlsKeyFile = lib.mkOptionDefault null;
  };
  services.etcd = {
    certFile = lib.mkOptionDefault null;
    keyFile = lib.mkOptionDefault null;
  };
  systemd.services = lib.mkMerge [
    (lib.mkIf (has "master" && k.apiserver.tlsCertFile != null) {
      kube-apiserver = serve "Kubernetes APIServer Service" 6443 k.apiserver.tlsCertFile k.apiserver.tlsKeyFile;
    })
    (lib.mkIf (has "master" && config.services.etcd.certFile != null) {
      etcd = serve "etcd key-value store" 2379 config.services.etcd.certFile config.services.etcd.keyFile;
    })
    (lib.mkIf (has "node" && k.kubelet.tlsCertFile != null) {
      kubelet = serve "Kubernetes Kubelet Service" 10250 k.kubelet.tlsCertFile k.kubelet.tlsKeyFile;
    })
  ];
}
