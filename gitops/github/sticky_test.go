package github

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/reconcile"
)

func TestMaxCommentCharsIsReconciles(t *testing.T) {
	if MaxCommentChars != reconcile.MaxCommentSize {
		t.Fatalf("MaxCommentChars = %d, reconcile.MaxCommentSize = %d", MaxCommentChars, reconcile.MaxCommentSize)
	}
}

// smallPlan is a plan of a few hosts whose revision is rev.
func smallPlan(rev string, hosts int) *reconcile.Plan {
	p := &reconcile.Plan{Fleet: "ducksnest", Revision: rev, ObservedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i := range hosts {
		name := fmt.Sprintf("host-%04d", i)
		p.Steps = append(p.Steps,
			reconcile.Step{Plane: reconcile.PlaneCloud, Action: reconcile.ActionCreate, Address: reconcile.CloudAddress(reconcile.KindInstance, name), Reason: "not in AWS yet",
				Changes: []reconcile.Change{
					{Attr: "instance_type", After: "t3.medium"},
					{Attr: "ami", After: "ami-0123456789abcdef0"},
					{Attr: "subnet", After: "subnet-0a1b2c3d"},
					{Attr: "root_volume.size_gb", After: "20"},
					{Attr: "root_volume.type", After: "gp3"},
					{Attr: "tags.nest:host", After: name},
					{Attr: "user_data", Sensitive: true},
				}},
			reconcile.Step{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll, Address: reconcile.MustParseAddress("host." + name), Reason: "revision " + rev, Batch: 1 + i/10,
				Changes: []reconcile.Change{{Attr: "revision", Before: "0ld", After: rev}}},
		)
	}
	return p
}

func TestUpsertStickyRefusesPartsItCouldNotFindAgain(t *testing.T) {
	w := setup(t)
	c, _ := tokenClient(t, w)
	ctx := testContext(t)
	marker := reconcile.MarkdownMarker("ducksnest")
	for name, tc := range map[string]struct {
		marker string
		parts  []string
		want   string
	}{
		"no marker":       {"", []string{"x"}, "marker is empty"},
		"no parts":        {marker, nil, "no parts"},
		"unmarked part":   {marker, []string{marker + "part=1/2 -->\n", "plain"}, "part 2 of 2 does not begin with the marker"},
		"too long a part": {marker, []string{marker + strings.Repeat("é", MaxCommentChars)}, "over GitHub's limit"},
	} {
		_, err := c.UpsertSticky(ctx, testRepo, 1, tc.marker, tc.parts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
	if n := w.srv.Writes(); n != 0 {
		t.Errorf("%d writes for refused parts", n)
	}
}
