package host

import "testing"

func TestAuthKeyFromUserData(t *testing.T) {
	for _, tc := range []struct {
		userData, want string
		ok             bool
	}{
		{"#!/bin/sh\ntailscale up --authkey=tskey-lab\n", "tskey-lab", true},
		{"tailscale up --auth-key tskey-auth-k1 --hostname web", "tskey-auth-k1", true},
		{`tailscale up --authkey="tskey-auth-q"`, "tskey-auth-q", true},
		{"export TS_AUTHKEY='tskey-auth-env'\n", "tskey-auth-env", true},
		{"#!/bin/sh\necho hello\n", "", false},
	} {
		got, ok := AuthKeyFromUserData([]byte(tc.userData))
		if got != tc.want || ok != tc.ok {
			t.Errorf("AuthKeyFromUserData(%q) = %q, %v; want %q, %v", tc.userData, got, ok, tc.want, tc.ok)
		}
	}
}

func TestUserDataOfNestbotsInstances(t *testing.T) {
	ud := []byte("### nestbot user-data: fleet ducksnest, host ec2-worker-1\n{ config, pkgs, modulesPath, ... }:\n{\n  networking.hostName = \"ec2-worker-1\";\n  services.tailscale.authKeyFile = pkgs.writeText \"tailscale-authkey\" \"tskey-auth-lab123\";\n}\n")
	if k, ok := AuthKeyFromUserData(ud); !ok || k != "tskey-auth-lab123" {
		t.Fatalf("auth key %q %v", k, ok)
	}
	if n, ok := HostNameFromUserData(ud); !ok || n != "ec2-worker-1" {
		t.Fatalf("host name %q %v", n, ok)
	}
}
