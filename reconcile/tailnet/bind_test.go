package tailnet

import (
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/reconcile"
)

// TestBindRefusesImpersonators: a node is taken for a host only by what
// nestbot controls — a fleet tag, the node pinned for the host — and two
// candidates for one host are both refused.
func TestBindRefusesImpersonators(t *testing.T) {
	hosts := map[string]string{"web": "web", "db": "db", "new": "new"}
	nodes := []reconcile.Node{
		{ID: "nWEB", Name: "web", Tags: []string{"tag:nest"}},
		{ID: "nFAKEWEB", Name: "web", Tags: []string{"tag:nest"}},        // not the pinned node
		{ID: "nDB", Name: "new", Tags: []string{"tag:nest"}},             // db's node, renamed
		{ID: "nNEW1", Name: "new", Tags: []string{"tag:nest"}},           // two fresh ones
		{ID: "nNEW2", DNSName: "new.ts.net", Tags: []string{"tag:nest"}}, // (by its DNS name)
		{ID: "nUNTAGGED", Name: "db"},                                    // not a fleet node
		{ID: "nLAPTOP", Name: "laptop"},                                  // no host's: kept
	}
	kept, refused := Bind(nodes, BindOptions{Hosts: hosts, Tags: []string{"tag:nest"}, Pinned: map[string]string{"web": "nWEB", "db": "nDB"}})
	var ids []string
	for _, n := range kept {
		ids = append(ids, n.ID)
	}
	if want := []string{"nWEB", "nLAPTOP"}; !slices.Equal(ids, want) {
		t.Errorf("kept %v, want %v", ids, want)
	}
	text := strings.Join(refused, "\n")
	for _, want := range []string{"nFAKEWEB) is not the node pinned for host web", "pinned for host db (nDB) now calls itself new",
		"2 nodes are named new (nNEW1, nNEW2)", "nUNTAGGED) carries none of the fleet's tags"} {
		if !strings.Contains(text, want) {
			t.Errorf("refusals lack %q:\n%s", want, text)
		}
	}
}
