package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/lab/ec2/awscli"
	"github.com/ducksnest/nestbot/nest"
)

// adoptLines reads the adopt: lines out of a plan that stopped before
// twins, as a person copies them.
func adoptLines(t *testing.T, out string) []nest.Adoption {
	t.Helper()
	_, rest, ok := strings.Cut(out, "put these adopt: lines into nest.yaml:\n")
	body, _, ok2 := strings.Cut(rest, "To create one anyway")
	if !ok || !ok2 {
		t.Fatalf("no adopt: lines in:\n%s", out)
	}
	lines := strings.Split(strings.TrimRight(body, "\n"), "\n")
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		lines[i] = l[min(indent, len(l)-len(strings.TrimLeft(l, " "))):]
	}
	got, err := nest.AdoptionsIn([]byte(strings.Join(lines, "\n")))
	if err != nil || len(got) == 0 {
		t.Fatalf("the adopt: lines are not YAML to paste (%v):\n%s", err, body)
	}
	return got
}

// TestTerraformAccountIsAdoptedWithoutTwins: the DucksNest account, built
// as Terraform leaves it through the AWS CLI, and a nest.yaml that
// describes it without adopt:. The plan stops with the adopt: lines (exit
// 1, nothing created); nestbot adopt prints, from the account and from the
// Terraform state alike, a nest.yaml that validate accepts and that plans
// 0 to create; with the pasted lines the plan is 7 adoptions and 0 to
// create, the apply takes them over, and the next plan has no changes.
func TestTerraformAccountIsAdoptedWithoutTwins(t *testing.T) {
	srv := &ec2.Server{PendingDelay: -1, StoppingDelay: -1, ShuttingDownDelay: -1}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	acct := awscli.BuildAccount(awscli.New(t, srv, "ap-northeast-2", ""), srv)

	dir := t.TempDir()
	file := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bare := file("nest.yaml", []byte(awscli.AccountNestYAML))
	state := file("terraform.tfstate", acct.TerraformState())
	id, secret := srv.Credentials()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "ap-northeast-2",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": srv.URL(), "AWS_PROFILE": ""} {
		t.Setenv(k, v)
	}
	nestbot := func(want int, args ...string) (stdout, stderr string) {
		t.Helper()
		code, out, errOut := runCLI(t, nil, args...)
		if code != want {
			t.Fatalf("nestbot %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out, errOut
	}
	wantIDs := map[string]string{"aws.vpc": acct.VpcID, "aws.subnets.public-a": acct.SubnetIDs[0], "aws.subnets.public-c": acct.SubnetIDs[1],
		"aws.internet_gateway": acct.InternetGatewayID, "aws.route_table": acct.RouteTableID, "aws.security_group": acct.SecurityGroupID,
		"hosts.ec2-controlplane.aws": acct.InstanceID}
	checkIDs := func(what string, got []nest.Adoption) {
		t.Helper()
		m := map[string]string{}
		for _, a := range got {
			m[strings.Join(a.Path, ".")] = a.ID
		}
		for path, id := range wantIDs {
			if m[path] != id {
				t.Errorf("%s: adopt at %s is %q, want %s", what, path, m[path], id)
			}
		}
		if len(m) != len(wantIDs) {
			t.Errorf("%s: %d adopt lines %v, want %d", what, len(m), m, len(wantIDs))
		}
	}
	calls := func() (n int64) {
		for action, c := range srv.CallCounts() {
			if !strings.HasPrefix(action, "Describe") {
				n += c
			}
		}
		return n
	}
	before := calls()

	// Without adopt: the plan stops, with the lines to paste.
	_, stopped := nestbot(1, "plan", "-f", bare)
	t.Logf("nestbot plan -f nest.yaml (no adopt:), exit 1:\n%s", stopped)
	pasted := adoptLines(t, stopped)
	checkIDs("the stopped plan", pasted)
	if n := calls() - before; n != 0 {
		t.Fatalf("planning called %d actions other than Describe", n)
	}

	// nestbot adopt, from the account and from the Terraform state.
	var adopted [2]string
	for i, args := range [][]string{{"adopt", "-f", bare}, {"adopt", "-f", bare, "--terraform-state", state}} {
		out, report := nestbot(0, args...)
		t.Logf("nestbot %s:\n%s%s", strings.Join(args[2:], " "), report, out)
		got, err := nest.AdoptionsIn([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		checkIDs("nestbot "+strings.Join(args, " "), got)
		adopted[i] = file("adopted-"+string(rune('a'+i))+".yaml", []byte(out))
		if out, _ := nestbot(0, "validate", "-f", adopted[i]); !strings.Contains(out, "valid. Fleet ducksnest") {
			t.Errorf("validate: %s", out)
		}
		if out, _ := nestbot(0, "plan", "-f", adopted[i]); !strings.Contains(out, "Plan: 0 to create, 0 to update, 0 to delete, 7 to adopt") {
			t.Errorf("the plan of nestbot adopt's output:\n%s", out)
		}
	}
	if n := calls() - before; n != 0 {
		t.Fatalf("adopt and plan called %d actions other than Describe", n)
	}

	// The pasted lines: 0 to create, then the apply, then no changes.
	src, err := os.ReadFile(bare)
	if err != nil {
		t.Fatal(err)
	}
	withLines, err := nest.WithAdoptions(src, pasted)
	if err != nil {
		t.Fatal(err)
	}
	fixed := file("nest.pasted.yaml", withLines)
	if out, _ := nestbot(0, "plan", "-f", fixed); !strings.Contains(out, "Plan: 0 to create, 0 to update, 0 to delete, 7 to adopt") {
		t.Fatalf("the plan with the pasted lines:\n%s", out)
	}
	nestbot(0, "apply", "-f", fixed, "--auto-approve")
	if out, _ := nestbot(0, "plan", "-f", fixed); !strings.Contains(out, "No changes.") {
		t.Fatalf("the plan after the apply:\n%s", out)
	}
	if n := len(srv.Instances()); n != 1 {
		t.Fatalf("%d instances, want the one Terraform built", n)
	}
	for _, id := range []string{acct.VpcID, acct.SecurityGroupID, acct.InstanceID} {
		if tags, _ := srv.Tags(id); tags["nest:managed"] != "true" {
			t.Errorf("%s is not tagged as nestbot's: %v", id, tags)
		}
	}
	// Taken over, nestbot adopt says so, and its lines keep the Names.
	out, report := nestbot(0, "adopt", "-f", bare)
	got, _ := nest.AdoptionsIn([]byte(out))
	checkIDs("nestbot adopt after the apply", got)
	if !strings.Contains(report, acct.VpcID+" is the fleet's already") {
		t.Errorf("nestbot adopt after the apply:\n%s", report)
	}
	again := file("adopted-again.yaml", []byte(out))
	if out, _ := nestbot(0, "plan", "-f", again); !strings.Contains(out, "No changes.") {
		t.Errorf("the plan of nestbot adopt's output once the account is the fleet's:\n%s", out)
	}
}
