package nest

import (
	"errors"
	"strings"
	"testing"
)

const adoptFleet = `version: 1
name: tiny
aws:
  region: eu-west-1
  vpc: {cidr: 10.0.0.0/16, adopt: none}
  subnets:
    a: {cidr: 10.0.0.0/24, zone: eu-west-1a, adopt: {tag: Name=tf-a}}
  security_group: {adopt: {group_name: tiny}}
hosts:
  box:
    roles: [worker]
    aws: {instance_type: t3.micro, ami: {name: NixOS-*}, subnet: a, adopt: {id: i-0123456789abcdef0}}
`

// TestAdoptForms: adopt is a mapping (id, tag, or a security group's
// group_name) or the word none, which creates the resource anyway.
func TestAdoptForms(t *testing.T) {
	f, err := Parse("nest.yaml", []byte(adoptFleet))
	if err != nil {
		t.Fatal(err)
	}
	a := f.AWS
	if a.VPC.Adopt == nil || !a.VPC.Adopt.None || a.VPC.Adopt.Takes() {
		t.Errorf("adopt: none decoded as %+v", a.VPC.Adopt)
	}
	if s := a.Subnets["a"].Adopt; !s.Takes() || s.Tag != "Name=tf-a" {
		t.Errorf("subnet adopt %+v", s)
	}
	if g := a.SecurityGroup.Adopt; !g.Takes() || g.GroupName != "tiny" {
		t.Errorf("security group adopt %+v", g)
	}
	if (*Adopt)(nil).Takes() {
		t.Error("no adopt block takes something over")
	}
}

func TestAdoptMistakes(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{"adopt: none}", "adopt: yes}", `nest.yaml:5:35: aws.vpc.adopt: "yes" is not an adoption: write adopt: {id: …}, adopt: {tag: Key=Value} or adopt: none`},
		{"adopt: none}", "adopt: {group_name: x}}", "aws.vpc.adopt.group_name: group_name adopts only a security group"},
		{"adopt: {group_name: tiny}", "adopt: {group_name: tiny, id: sg-0123}", "aws.security_group.adopt: adopt names the resource more than one way"},
		{"adopt: {group_name: tiny}", "adopt: {}", "give id: sg-… or tag: Key=Value or group_name: NAME; or write adopt: none to create it anyway"},
	} {
		_, err := Parse("nest.yaml", []byte(strings.Replace(adoptFleet, tc.old, tc.new, 1)))
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tc.want) {
			t.Errorf("%s: %v, want one error containing %q", tc.new, err, tc.want)
		}
	}
}
