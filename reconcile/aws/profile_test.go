package aws_test

import (
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/reconcile"
	nestaws "github.com/ducksnest/nestbot/reconcile/aws"
)

// TestApplyInstanceProfileChanges: changing a host's instance_profile is an
// update in place that replaces the instance's profile association;
// removing it from nest.yaml disassociates it; adding it back associates
// one. After each apply the instance is the same one, carries the profile
// nest.yaml names, and a re-plan shows no changes.
func TestApplyInstanceProfileChanges(t *testing.T) {
	srv := lab(t)
	srv.SeedInstanceProfile("ducksnest-admin")
	w := newWorld(t, srv, nestaws.ClientOptions{})
	f := example(t)
	w.converge(f)
	first := liveInstances(srv, "ec2-controlplane")[0]
	h := f.Hosts["ec2-controlplane"].AWS

	for _, tc := range []struct {
		name, profile, before, log string
		calls                      []string
	}{
		{"replaced", "ducksnest-admin", "ducksnest-controlplane",
			"update aws.instance.ec2-controlplane: replacing instance profile ducksnest-controlplane of " + first.ID + " with ducksnest-admin",
			[]string{"DescribeIamInstanceProfileAssociations", "ReplaceIamInstanceProfileAssociation"}},
		{"removed", "", "ducksnest-admin",
			"update aws.instance.ec2-controlplane: disassociating instance profile ducksnest-admin from " + first.ID,
			[]string{"DescribeIamInstanceProfileAssociations", "DisassociateIamInstanceProfile"}},
		{"added", "ducksnest-controlplane", "",
			"update aws.instance.ec2-controlplane: associating instance profile ducksnest-controlplane with " + first.ID,
			[]string{"DescribeIamInstanceProfileAssociations", "AssociateIamInstanceProfile"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.InstanceProfile = tc.profile
			p, live := w.plan(f)
			if len(p.Steps) != 1 {
				t.Fatalf("plan: %v", actions(p))
			}
			st := p.Steps[0]
			if st.Action != reconcile.ActionUpdate || st.Address.String() != "aws.instance.ec2-controlplane" || len(st.Changes) != 1 ||
				st.Changes[0] != (reconcile.Change{Attr: "instance_profile", Before: tc.before, After: tc.profile}) {
				t.Fatalf("plan step %+v", st)
			}
			var text strings.Builder
			if err := reconcile.RenderText(&text, p, reconcile.TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "will be updated in place") {
				t.Fatalf("plan text:\n%s", text.String())
			}
			srv.ResetCalls()
			w.logs.Reset()
			if _, err := w.apply(f, p, live); err != nil {
				t.Fatalf("apply: %v", err)
			}
			for _, call := range tc.calls {
				if n := srv.Calls(call); n != 1 {
					t.Errorf("%s called %d times, want 1 (%v)", call, n, srv.CallCounts())
				}
			}
			if !strings.Contains(w.logs.String(), tc.log+"\n") {
				t.Errorf("log:\n%s\nwant the line:\n%s", w.logs.String(), tc.log)
			}
			ins := liveInstances(srv, "ec2-controlplane")
			wantARN := ""
			if tc.profile != "" {
				wantARN = "arn:aws:iam::" + ec2.DefaultAccountID + ":instance-profile/" + tc.profile
			}
			if len(ins) != 1 || ins[0].ID != first.ID || ins[0].IAMInstanceProfileARN != wantARN {
				t.Fatalf("after apply: %+v, want %s with profile %q", ins, first.ID, wantARN)
			}
			if again, _ := w.plan(f); len(again.Steps) != 0 {
				t.Fatalf("re-plan: %v", actions(again))
			}
		})
	}
}
