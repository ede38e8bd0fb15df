package reconcile

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Plans for the renderer tests, built by hand so that they show every
// action whatever Diff does today.

var (
	renderTestTime     = time.Date(2026, 7, 1, 9, 30, 0, 0, time.UTC)
	renderTestRevision = "1a2b3c4d5e6f708192a3b4c5d6e7f80910a1b2c3"
)

// renderTestPlan is a plan for a fleet of a control plane and n workers in
// which every action occurs, with a sensitive change. Each worker is
// created, joins, gets a certificate and rolls.
func renderTestPlan(n int) *Plan {
	p := &Plan{Fleet: "ducksnest", Revision: renderTestRevision, ObservedAt: renderTestTime}
	add := func(s Step) { p.Steps = append(p.Steps, s) }
	workers := make([]string, n)
	for i := range workers {
		workers[i] = fmt.Sprintf("worker-%d", i+1)
	}

	add(Step{Plane: PlaneCloud, Action: ActionAdopt, Address: MustParseAddress("aws.vpc"), ID: "vpc-0abc1234", Reason: "takes over vpc-0abc1234; tags are added, nothing is created",
		Changes: []Change{{Attr: "tags.nest:managed", After: "true"}, {Attr: "tags.nest:name", After: "ducksnest"}}})
	add(Step{Plane: PlaneCloud, Action: ActionCreate, Address: MustParseAddress("aws.subnet.public-c"),
		Changes: []Change{{Attr: "cidr", After: "10.20.1.0/24"}, {Attr: "zone", After: "ap-northeast-2c"}, {Attr: "map_public_ip", After: "true"}}})
	add(Step{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.security_group"), ID: "sg-0fedcba9876543210",
		Changes: []Change{{Attr: "description", Before: "managed by terraform", After: "managed by nestbot"}, {Attr: "tags.nest:user-data", Before: "a1b2", After: "c3d4"}}})
	add(Step{Plane: PlaneCloud, Action: ActionReplace, Address: MustParseAddress("aws.instance.ec2-controlplane"), ID: "i-0123456789abcdef0", Reason: "ami changes, forces replacement",
		Changes: []Change{
			{Attr: "ami", Before: "ami-0aaa", After: "ami-0bbb", ForcesReplace: true},
			{Attr: "instance_type", Before: "t3.medium", After: "t3.medium"},
			{Attr: "user_data", Sensitive: true},
		}})
	for _, w := range workers {
		add(Step{Plane: PlaneCloud, Action: ActionCreate, Address: MustParseAddress("aws.instance." + w), Changes: []Change{
			{Attr: "ami", After: "ami-0bbb"},
			{Attr: "instance_type", After: "t3.small"},
			{Attr: "subnet", After: "public-a"},
			{Attr: "private_ip", After: KnownAfterApply},
			{Attr: "user_data", Sensitive: true},
		}})
	}
	add(Step{Plane: PlaneCloud, Action: ActionDelete, Address: MustParseAddress("aws.subnet.legacy"), ID: "subnet-0123456789abcdef0", Reason: "no longer in nest.yaml",
		Changes: []Change{{Attr: "id", Before: "subnet-0123456789abcdef0"}}})

	for _, w := range workers {
		add(Step{Plane: PlaneTailnet, Action: ActionWait, Address: MustParseAddress("tailnet.node." + w), Reason: "wait up to 5m0s for the new instance to join the tailnet"})
	}
	add(Step{Plane: PlaneTailnet, Action: ActionDrift, Address: MustParseAddress("tailnet.node.laptop-ultra"), Reason: "offline since 2026-06-28 14:02 UTC; it will be skipped until it is back"})

	for _, w := range workers {
		add(Step{Plane: PlanePKI, Action: ActionIssue, Address: CertAddress(w + "/kubelet-client"), Reason: "new host",
			Changes: []Change{{Attr: "common_name", After: "system:node:" + w}, {Attr: "organization", After: "system:nodes"}, {Attr: "usages", After: "client auth"}}})
	}
	add(Step{Plane: PlanePKI, Action: ActionRenew, Address: MustParseAddress("pki.cert.ec2-controlplane/apiserver"), Reason: "expires in 12 days (renew_before 30 days)",
		Changes: []Change{{Attr: "not_after", Before: "2026-07-13", After: "2027-07-01"}}})
	add(Step{Plane: PlanePKI, Action: ActionReissue, Address: MustParseAddress("pki.cert.ec2-controlplane/etcd-server"), Reason: "dns_names changed",
		Changes: []Change{{Attr: "dns_names", Before: "ec2-controlplane, localhost", After: "ec2-controlplane, ec2-controlplane.ducksnest.ts.net, localhost"}}})
	add(Step{Plane: PlanePKI, Action: ActionRekey, Address: MustParseAddress("pki.key.sa"), Reason: "recipients changed; the key is re-encrypted, not reissued",
		Changes: []Change{{Attr: "recipients", Before: "admin, ec2-controlplane", After: "admin, admin-2, ec2-controlplane"}}})
	add(Step{Plane: PlanePKI, Action: ActionDelete, Address: MustParseAddress("pki.cert.old-node/kubelet-client"), Reason: "no host needs it any more"})
	add(Step{Plane: PlanePKI, Action: ActionDelete, Address: MustParseAddress("pki.cert.ducksnest-laptop-old/k8s-kubelet"),
		Reason: "NOT ISSUED BY NESTBOT: a certificate adopted from the tree, deleted because pki.remove lists derived/ducksnest-laptop-old/"})

	add(Step{Plane: PlaneHosts, Action: ActionRoll, Address: MustParseAddress("host.ec2-controlplane"), Batch: 1, Reason: "new instance: switch it to 1a2b3c4",
		Changes: []Change{{Attr: "role", After: "control-plane"}}})
	for i, w := range workers {
		add(Step{Plane: PlaneHosts, Action: ActionRoll, Address: MustParseAddress("host." + w), Batch: 2 + i/2, Reason: "new instance: switch it to 1a2b3c4",
			Changes: []Change{{Attr: "role", After: "worker"}}})
	}
	p.Notes = []string{"laptop-ultra was not reached; its revision and certificates were not checked"}
	p.Warnings = []string{"This plan deletes derived/ducksnest-laptop-old/k8s-kubelet.crt, which nestbot did not issue (it lacks nestbot's certificate policy): pki.remove lists derived/ducksnest-laptop-old/"}
	return p
}

// renderDriftPlan is a plan that only reports drift.
func renderDriftPlan() *Plan {
	return &Plan{Fleet: "ducksnest", Revision: renderTestRevision, ObservedAt: renderTestTime,
		Steps: []Step{
			{Plane: PlaneTailnet, Action: ActionDrift, Address: MustParseAddress("tailnet.node.laptop-ultra"), Reason: "offline since 2026-06-28 14:02 UTC; it will be skipped until it is back"},
			{Plane: PlanePKI, Action: ActionDrift, Address: MustParseAddress("pki.cert.laptop-firebat/kubelet-serving"), Reason: "not yet rolled: laptop-firebat still serves an older certificate"},
		},
		Notes: []string{"laptop-ultra was not reached; its revision and certificates were not checked"},
	}
}

func renderEmptyPlan() *Plan {
	return &Plan{Fleet: "ducksnest", Revision: renderTestRevision, ObservedAt: renderTestTime}
}

// renderCases are the plans with golden files for every renderer.
func renderCases() []struct {
	name string
	plan *Plan
} {
	return []struct {
		name string
		plan *Plan
	}{
		{"empty", renderEmptyPlan()},
		{"every-action", renderTestPlan(2)},
		{"drift-only", renderDriftPlan()},
	}
}

// renderAll renders p with all three renderers, the text without colour.
func renderAll(t *testing.T, p *Plan) map[string]string {
	t.Helper()
	var text, js bytes.Buffer
	if err := RenderText(&text, p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := RenderJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"text":     text.String(),
		"markdown": strings.Join(RenderMarkdown(p), "\n"),
		"json":     js.String(),
	}
}

func TestRenderersAreDeterministic(t *testing.T) {
	for _, p := range []*Plan{renderTestPlan(2), renderTestPlan(1000), renderDriftPlan(), renderEmptyPlan()} {
		first, second := renderAll(t, p), renderAll(t, p)
		for format := range first {
			if first[format] != second[format] {
				t.Errorf("%s of a %d-step plan differs between two renders", format, len(p.Steps))
			}
		}
	}
}

// A sensitive change must never show a value, even when the Change was
// built carelessly with one: the renderers ignore Before and After.
func TestRenderersNeverShowSensitiveValues(t *testing.T) {
	const canary = "CANARY-tskey-auth-k123"
	p := renderTestPlan(1)
	for _, a := range []Action{ActionCreate, ActionUpdate, ActionReplace, ActionDelete, ActionIssue, ActionRekey} {
		p.Steps = append(p.Steps, Step{Plane: PlaneCloud, Action: a, Address: CloudAddress(KindInstance, "canary-"+string(a)),
			Changes: []Change{{Attr: "user_data", Before: canary + "-before", After: canary + "-after", Sensitive: true}}})
	}
	for format, out := range renderAll(t, p) {
		if strings.Contains(out, "CANARY") {
			t.Errorf("%s shows a sensitive value", format)
		}
		if format != "json" && !strings.Contains(out, "user_data = "+Sensitive) {
			t.Errorf("%s does not say that user_data changed: want %q", format, "user_data = "+Sensitive)
		}
	}
	if out := renderAll(t, p)["json"]; !strings.Contains(out, `"sensitive": true`) {
		t.Errorf("json does not mark the change sensitive")
	}
}
