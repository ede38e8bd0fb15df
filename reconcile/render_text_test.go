package reconcile

import (
	"bytes"
	"strings"
	"testing"
)

func renderText(t *testing.T, p *Plan, o TextOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := RenderText(&b, p, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRenderTextGolden(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			checkGolden(t, "render/"+c.name+".txt", []byte(renderText(t, c.plan, TextOptions{})))
		})
	}
}

func TestRenderTextNoSteps(t *testing.T) {
	if got := renderText(t, renderEmptyPlan(), TextOptions{Color: true}); got != NoChangesText+"\n" {
		t.Errorf("got %q, want %q", got, NoChangesText+"\n")
	}
	p := renderEmptyPlan()
	p.Notes = []string{"the target revision is unknown"}
	want := NoChangesText + "\n\nNote: the target revision is unknown\n"
	if got := renderText(t, p, TextOptions{}); got != want {
		t.Errorf("with a note: got %q, want %q", got, want)
	}
}

func TestRenderTextDriftOnly(t *testing.T) {
	p := renderDriftPlan()
	got := renderText(t, p, TextOptions{})
	for _, want := range []string{"  ! tailnet.node.laptop-ultra\n", "\nNo changes to apply.\n" + p.Summary().String() + "\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if !strings.HasSuffix(got, p.Summary().String()+"\n") {
		t.Errorf("does not end with the summary line:\n%s", got)
	}
}

func TestRenderTextStepShape(t *testing.T) {
	p := &Plan{Fleet: "f", Steps: []Step{{Plane: PlaneCloud, Action: ActionReplace, Address: MustParseAddress("aws.instance.ec2-controlplane"),
		Reason: "ami changes, forces replacement",
		Changes: []Change{
			{Attr: "ami", Before: "ami-0aaa", After: "ami-0bbb", ForcesReplace: true},
			{Attr: "instance_type", Before: "t3.medium", After: "t3.medium"},
			{Attr: "user_data", Sensitive: true},
			{Attr: "id", Before: "i-0123"},
			{Attr: "private_ip", After: KnownAfterApply},
		}}}}
	want := `
  # aws.instance.ec2-controlplane must be replaced: ami changes, forces replacement
-/+ aws.instance.ec2-controlplane
      ~ ami           = "ami-0aaa" -> "ami-0bbb" # forces replacement
        instance_type = "t3.medium"
      ~ user_data     = (sensitive)
      - id            = "i-0123"
      + private_ip    = (known after apply)
`
	if got := renderText(t, p, TextOptions{}); !strings.Contains(got, want) {
		t.Errorf("got:\n%s\nwant it to contain:%s", got, want)
	}
}

func TestRenderTextSymbols(t *testing.T) {
	p := renderTestPlan(1)
	got := renderText(t, p, TextOptions{})
	for _, want := range []string{
		"  + aws.subnet.public-c\n", "  ~ aws.security_group\n", "-/+ aws.instance.ec2-controlplane\n",
		"  - aws.subnet.legacy\n", "  = aws.vpc\n", "  * tailnet.node.worker-1\n", "  ! tailnet.node.laptop-ultra\n",
		"  + pki.cert.worker-1/kubelet-client\n", "  ~ pki.cert.ec2-controlplane/apiserver\n",
		"  > host.worker-1\n", "  # host.worker-1 will be switched in batch 2: new instance",
		"  # pki.cert.ec2-controlplane/apiserver will be renewed: expires in 12 days",
		"  # pki.key.sa will be re-keyed: recipients changed",
		"  # aws.vpc (vpc-0abc1234) will be adopted: takes over vpc-0abc1234",
		"\nCloud\n", "\nTailnet\n", "\nCertificates\n", "\nHosts\n",
		"\nNote: laptop-ultra was not reached",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	if !strings.HasSuffix(got, "\n\n"+p.Summary().String()+"\n") {
		t.Errorf("does not end with a blank line and the summary line:\n%s", got)
	}
}

func TestRenderTextColor(t *testing.T) {
	p := renderTestPlan(1)
	if got := renderText(t, p, TextOptions{}); strings.Contains(got, "\x1b") {
		t.Errorf("an escape sequence without Color")
	}
	got := renderText(t, p, TextOptions{Color: true})
	for _, want := range []string{
		ansiGreen + "+" + ansiReset + " aws.subnet.public-c",
		ansiYellow + "~" + ansiReset + " aws.security_group",
		ansiRed + "-" + ansiReset + " aws.subnet.legacy",
		ansiCyan + ">" + ansiReset + " host.worker-1",
		ansiRed + "-" + ansiReset + "/" + ansiGreen + "+" + ansiReset + " aws.instance.ec2-controlplane",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q", want)
		}
	}
	// Colour changes nothing else.
	if plain := renderText(t, p, TextOptions{}); stripANSI(got) != plain {
		t.Errorf("coloured output differs from the plain one once its colours are removed")
	}
}

func stripANSI(s string) string {
	for _, c := range []string{ansiReset, ansiBold, ansiRed, ansiGreen, ansiYellow, ansiCyan} {
		s = strings.ReplaceAll(s, c, "")
	}
	return s
}

// What comes from the live fleet cannot drive the terminal or forge lines.
func TestRenderTextEscapesControlCharacters(t *testing.T) {
	p := &Plan{Fleet: "f\x1b[2J", Steps: []Step{{Plane: PlaneCloud, Action: ActionUpdate, Address: MustParseAddress("aws.instance.x\x1b]0;pwned\a"),
		Reason:  "tag changed\nNote: forged",
		Changes: []Change{{Attr: "tags.Name\r", Before: "a\x1b[31m", After: "b\nc"}}}},
		Notes: []string{"note\x9b31m"}}
	got := renderText(t, p, TextOptions{})
	if strings.ContainsAny(got, "\x1b\a\r\u009b") || strings.Contains(got, "\x9b") {
		t.Errorf("control characters reach the terminal: %q", got)
	}
	if strings.Contains(got, "\nNote: forged") {
		t.Errorf("a reason forged a line: %q", got)
	}
	if want := `~ tags.Name\r = "a\x1b[31m" -> "b\nc"`; !strings.Contains(got, want) {
		t.Errorf("missing %q in %q", want, got)
	}
}
