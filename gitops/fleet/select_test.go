package fleet

import (
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/nest"
	"github.com/ducksnest/nestbot/reconcile"
)

func TestSelectHosts(t *testing.T) {
	f, err := nest.Parse("nest.yaml", []byte(`version: 1
name: fleet
hosts:
  cp: {roles: [control-plane]}
  web-1: {roles: [worker]}
  web-2: {roles: [worker], tailnet_name: ducks-web-2}
  db: {roles: [worker]}
`))
	if err != nil {
		t.Fatal(err)
	}
	d := &Desired{File: "nest.yaml", Fleet: f}
	live := &reconcile.Live{Tailnet: reconcile.Tailnet{Nodes: []reconcile.Node{
		{Name: "web-1", Tags: []string{"tag:nest", "tag:gpu"}},
		{Name: "ducks-web-2", Tags: []string{"tag:nest", "tag:gpu"}}, // found by its tailnet name
		{Name: "db", Tags: []string{"tag:nest"}},
	}}}
	for _, tc := range []struct {
		sel  []string
		want []string
		err  string
	}{
		{sel: []string{"cp"}, want: []string{"cp"}},
		{sel: []string{"@worker"}, want: []string{"db", "web-1", "web-2"}},
		{sel: []string{"@control-plane", "db"}, want: []string{"cp", "db"}},
		{sel: []string{"web-*"}, want: []string{"web-1", "web-2"}},
		{sel: []string{"@tag:gpu"}, want: []string{"web-1", "web-2"}},
		{sel: []string{"@tag:gpu", "@worker"}, want: []string{"db", "web-1", "web-2"}},
		{sel: []string{"nope"}, err: "no such host"},
		{sel: []string{"@gpu"}, err: "no role"},
		{sel: []string{"@tag:tpu"}, err: "carries tag:tpu"},
		{sel: []string{"[x"}, err: "not a glob"},
	} {
		got, err := SelectHosts(d, live, tc.sel)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want an error with %q", tc.sel, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v, %v; want %v", tc.sel, got, err, tc.want)
		}
	}
}
