package fleet

import (
	"maps"
	"slices"
	"testing"

	"github.com/ducksnest/nestbot/nest"
)

func TestCertHosts(t *testing.T) {
	d := &Desired{Fleet: &nest.Fleet{Hosts: map[string]*nest.Host{"cp": {Name: "cp"}, "w1": {Name: "w1"}, "w2": {Name: "w2"}}}}
	for _, c := range []struct {
		changed []string
		want    []string
	}{
		{[]string{"derived/w1/kubernetes-kubelet.crt", "derived/w1/kubernetes-kubelet.key.age", "secrets.nix"}, []string{"w1"}},
		{[]string{"hosts/w2.pub", "derived/w2/kubernetes-kubelet.crt"}, []string{"w2"}},
		{[]string{"ca/kubernetes.crt"}, []string{"cp", "w1", "w2"}},
		{[]string{"secrets.nix", "hosts/w1.pub"}, nil},
		{[]string{"derived/gone/x.crt"}, nil},
	} {
		got := slices.Sorted(maps.Keys(certHosts(d, c.changed)))
		if !slices.Equal(got, c.want) {
			t.Errorf("certHosts(%v) = %v, want %v", c.changed, got, c.want)
		}
	}
}
