package reconcile

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestAddressRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		addr Address
		want string
	}{
		{CloudAddress(KindVPC, ""), "aws.vpc"},
		{CloudAddress(KindInternetGateway, ""), "aws.internet_gateway"},
		{CloudAddress(KindSecurityGroup, ""), "aws.security_group"},
		{CloudAddress(KindSubnet, "public-a"), "aws.subnet.public-a"},
		{CloudAddress(KindRouteTable, "public"), "aws.route_table.public"},
		{CloudAddress(KindInstance, "ec2-worker-2"), "aws.instance.ec2-worker-2"},
		// A name a tag gave a resource nestbot names no further.
		{CloudAddress(KindSecurityGroup, "gone"), "aws.security_group.gone"},
		{TailnetAddress("laptop-ultra"), "tailnet.node.laptop-ultra"},
		{CertAddress("ca"), "pki.cert.ca"},
		{CertAddress("ec2-controlplane/apiserver"), "pki.cert.ec2-controlplane/apiserver"},
		{CertAddress("service-account"), "pki.key.service-account"},
		{HostAddress("ec2-controlplane"), "host.ec2-controlplane"},
		// Names may hold dots: all after the kind is the name.
		{CertAddress("old/k8s.kubelet"), "pki.cert.old/k8s.kubelet"},
		{HostAddress("a.b"), "host.a.b"},
		{CloudAddress(KindInstance, "x.y.z"), "aws.instance.x.y.z"},
		{HostAddress("odd\x1b]0;name\a"), "host.odd\x1b]0;name\a"},
	} {
		if got := tc.addr.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.addr, got, tc.want)
		}
		back, err := ParseAddress(tc.want)
		if err != nil || back != tc.addr {
			t.Errorf("ParseAddress(%q) = %#v, %v; want %#v", tc.want, back, err, tc.addr)
		}
	}
}

func TestParseAddressRefuses(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"", "empty plan address"},
		{"aws", `plan address "aws": "" is not a kind of aws address`},
		{"aws.", `plan address "aws.": "" is not a kind of aws address`},
		{"aws.bucket.x", `plan address "aws.bucket.x": "bucket" is not a kind of aws address`},
		{"aws_instance.x", `plan address "aws_instance.x": "aws_instance" is not a plane's (aws, tailnet, pki or host)`},
		{"cloud.vpc", `"cloud" is not a plane's`}, // planes are named, not prefixed, "cloud"
		{"hosts.x", `"hosts" is not a plane's`},
		{"vpc-0abc1234", `"vpc-0abc1234" is not a plane's`},
		{"host", `plan address "host": no host name (host.<name>)`},
		{"host.", `plan address "host.": no host name (host.<name>)`},
		{"tailnet.node", `plan address "tailnet.node": no name (tailnet.node.<name>)`},
		{"tailnet.node.", `plan address "tailnet.node.": no name (tailnet.node.<name>)`},
		{"tailnet.device.x", `"device" is not a kind of tailnet address`},
		{"pki.cert", `plan address "pki.cert": no name (pki.cert.<name>)`},
		{"pki.crl.x", `"crl" is not a kind of pki address`},
	} {
		a, err := ParseAddress(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseAddress(%q) = %#v, %v; want an error containing %q", tc.in, a, err, tc.err)
		}
	}
}

func TestAddressWithin(t *testing.T) {
	a := CloudAddress(KindSubnet, "public-a")
	for target, want := range map[string]bool{
		"aws.subnet.public-a": true, "aws.subnet": true, "aws": true,
		"aws.subnet.public": false, "aws.sub": false, "aws.subnet.public-a.x": false, "": false,
	} {
		if got := a.Within(target); got != want {
			t.Errorf("%s.Within(%q) = %v, want %v", a, target, got, want)
		}
	}
}

// TestAddressJSON: an address is a JSON string, and a step whose address
// does not parse is refused when read.
func TestAddressJSON(t *testing.T) {
	st := Step{Plane: PlaneHosts, Action: ActionRoll, Address: HostAddress("cp"), Batch: 1}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"plane":"hosts","action":"roll","address":"host.cp","batch":1}`; string(data) != want {
		t.Errorf("marshal: %s, want %s", data, want)
	}
	var back Step
	if err := json.Unmarshal(data, &back); err != nil || back.Address != st.Address {
		t.Errorf("unmarshal: %#v, %v", back.Address, err)
	}
	err = json.Unmarshal([]byte(`{"plane":"hosts","action":"roll","address":"hosts.cp"}`), &back)
	if err == nil || !strings.Contains(err.Error(), `plan address "hosts.cp"`) {
		t.Errorf("unmarshal of a bad address: %v", err)
	}
}

// TestSavedPlanOfTheStringAddresses: testdata/saved/every-address.v1.json
// was written by nestbot plan --save-plan's encoder before addresses were
// typed (at 1838f6f, from renderTestPlan(3) and a delete of a tag's
// address); it is a fixture, not a golden file, and -update leaves it. It
// still loads, with every address parsed, and encodes to the same bytes.
func TestSavedPlanOfTheStringAddresses(t *testing.T) {
	const name = "testdata/saved/every-address.v1.json"
	old, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSavedPlan(name, old)
	if err != nil {
		t.Fatal(err)
	}
	planes := map[Plane]int{}
	for _, st := range s.Plan.Steps {
		if st.Address.Plane != st.Plane {
			t.Errorf("%s: plane %q, the step's is %q", st.Address, st.Address.Plane, st.Plane)
		}
		planes[st.Plane]++
	}
	if len(planes) != 4 {
		t.Errorf("the fixture's steps are of the planes %v, want all four", planes)
	}
	var again bytes.Buffer
	if err := s.Encode(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), old) {
		t.Errorf("re-encoded saved plan differs:\n%s", goldenDiff(old, again.Bytes()))
	}
}

// TestTagNotAnAddress: a resource that carries the fleet's tags but a
// nest:resource tag that is no address of its kind is an error of the
// plan, not a delete of whatever the tag says.
func TestTagNotAnAddress(t *testing.T) {
	for _, tag := range []string{"aws.subnet.x", "aws.bucket.x", "host.x"} {
		t.Run(tag, func(t *testing.T) {
			d := loadExample(t)
			l := convergedLive(t, d, revNew, observedAt)
			l.Cloud.VPCs = append(l.Cloud.VPCs, VPC{ID: "vpc-0stray", CIDR: "10.99.0.0/16",
				Tags: Tags{TagFleet: d.Fleet.Name, TagManaged: "true", TagResource: tag}})
			p, err := Diff(d, l, Options{})
			if err == nil || !strings.Contains(err.Error(), "vpc-0stray: its tag nest:resource was not written by nestbot") {
				t.Fatalf("error %v, want one naming vpc-0stray's tag", err)
			}
			for _, st := range p.Steps {
				if st.ID == "vpc-0stray" {
					t.Errorf("planned %s %s of vpc-0stray", st.Action, st.Address)
				}
			}
		})
	}
}
