package fleet

import (
	"slices"
	"testing"

	"github.com/ducksnest/nestbot/nest"
)

// TestTrustTakesCredentialsFromTheDefaultBranch: what decides where
// credentials go is the trusted nest.yaml's, whatever the pull request's
// says, and each difference is reported; with no trusted nest.yaml, no
// credential at all.
func TestTrustTakesCredentialsFromTheDefaultBranch(t *testing.T) {
	pr := func() *Desired {
		return &Desired{Fleet: &nest.Fleet{
			Tailnet: nest.Tailnet{ControlURL: "https://attacker.example", AuthKey: &nest.SecretRef{Env: "AWS_SECRET_ACCESS_KEY"},
				OAuth: &nest.OAuth{ClientID: "evil", ClientSecret: nest.SecretRef{File: "/proc/self/environ"}}, Tags: []string{"tag:evil"}},
			Hosts:  map[string]*nest.Host{"web": {}},
			PKI:    &nest.PKI{Admins: []string{"age1attacker"}, ServingPorts: []int{22, 5432}},
			GitHub: nest.GitHub{Apply: "comment", Require: []string{"mergeable"}},
		}, HostKeys: map[string]string{"web": "ssh-ed25519 AAAAattacker"}, Nodes: map[string]string{"web": "nATTACKER"}}
	}
	main := &Desired{Fleet: &nest.Fleet{
		Tailnet: nest.Tailnet{ControlURL: "https://control.example", AuthKey: &nest.SecretRef{Env: "TS_AUTHKEY"}, Tags: []string{"tag:nest"}},
		Hosts:   map[string]*nest.Host{"web": {}},
		PKI:     &nest.PKI{Admins: []string{"age1admin"}, ServingPorts: []int{6443}},
		GitHub:  nest.GitHub{Apply: "merge", Require: []string{"approved", "mergeable"}},
	}, HostKeys: map[string]string{"web": "ssh-ed25519 AAAAweb"}, Nodes: map[string]string{"web": "nWEB"}}

	d := pr()
	changed := d.Trust(main)
	f := d.Fleet
	if f.Tailnet.ControlURL != "https://control.example" || f.Tailnet.AuthKey.Env != "TS_AUTHKEY" || f.Tailnet.OAuth != nil ||
		!slices.Equal(f.Tailnet.Tags, []string{"tag:nest"}) || !slices.Equal(f.PKI.Admins, []string{"age1admin"}) || !slices.Equal(f.PKI.ServingPorts, []int{6443}) ||
		f.GitHub.Apply != "merge" || d.HostKeys["web"] != "ssh-ed25519 AAAAweb" || d.Nodes["web"] != "nWEB" {
		t.Errorf("after Trust: %+v %+v %+v %v %v", f.Tailnet, f.PKI, f.GitHub, d.HostKeys, d.Nodes)
	}
	for _, want := range []string{"tailnet.control_url", "tailnet.auth_key", "tailnet.oauth", "tailnet.tags", "github", "pki.admins", "pki.serving_ports",
		"the pinned host keys of web", "the pinned tailnet node of web"} {
		if !slices.Contains(changed, want) {
			t.Errorf("changed %q lacks %q", changed, want)
		}
	}
	if again := main.Trust(main); len(again) != 0 {
		t.Errorf("the default branch against itself changed %q", again)
	}

	d = pr()
	d.Trust(nil)
	if f := d.Fleet; f.Tailnet.ControlURL != "" || f.Tailnet.AuthKey != nil || f.Tailnet.OAuth != nil || len(f.Tailnet.Tags) != 0 || len(d.HostKeys) != 0 {
		t.Errorf("with no trusted nest.yaml, credentials remain: %+v %v", f.Tailnet, d.HostKeys)
	}
	if ports := d.Fleet.PKI.ServingPorts; !slices.Equal(ports, nest.DefaultServingPorts()) {
		t.Errorf("with no trusted nest.yaml, the plan probes the pull request's ports %v, want the default %v", ports, nest.DefaultServingPorts())
	}
}
