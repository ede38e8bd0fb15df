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
