package nest

import (
	"strings"
	"testing"
)

func TestLoadExample(t *testing.T) {
	f, err := Load("../examples/ducksnest/nest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "ducksnest" || len(f.Hosts) != 3 || f.Hosts["ec2-controlplane"].AWS.Subnet != "public-a" {
		t.Fatalf("decoded wrong: %+v", f)
	}
}

func TestLoadReportsEveryMistake(t *testing.T) {
	src := `version: 1
name: ducksnest
aws:
  region: ap-northeast-2
  vpc: {cidr: 10.20.0.0/16}
  subnets:
    public-a: {cidr: 10.20.0.0/33, zone: ap-northeast-2a}
    public-c: {cidr: 10.30.1.0/24, zone: ap-northeast-2c}
  colour: blue
tailnet:
  tags: [nest]
hosts:
  ec2-controlplane:
    roles: [control-plane, gpu]
    aws: {instance_type: t3.medium, ami: {name: x}, subnet: public-b}
rollout:
  max_parallel: 0
`
	_, err := Parse("nest.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	if n := strings.Count(err.Error(), "nest.yaml:"); n < 5 {
		t.Fatalf("want ≥5 errors, got %d", n)
	}
}
