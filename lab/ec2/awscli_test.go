package ec2_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/testkit"
	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/lab/ec2/awscli"
)

// recorder stands in front of the lab and keeps every answer, by action,
// for the shape check.
type recorder struct {
	srv *ec2.Server
	mu  sync.Mutex
	got map[string][][]byte // action → answers (HTTP 200 only)
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	form, _ := url.ParseQuery(string(body))
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	r.srv.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK {
		r.mu.Lock()
		r.got[form.Get("Action")] = append(r.got[form.Get("Action")], rec.Body.Bytes())
		r.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// TestAWSCLIMeetsWhatATerraformUserMeets builds the DucksNest account as
// Terraform leaves it through the AWS CLI, and asks the lab what the AWS
// provider asks EC2 (zones, account attributes, EBS defaults, key pairs,
// images owned by self, tags, network ACLs, instance types, credit
// specifications, VPC and instance attributes): each answer is what the
// EC2 API reference says, parsed by an independent client, and every
// element of every answer is one the CLI's botocore service model knows.
func TestAWSCLIMeetsWhatATerraformUserMeets(t *testing.T) {
	srv := &ec2.Server{PendingDelay: time.Second, StoppingDelay: -1, ShuttingDownDelay: -1}
	booted := make(chan ec2.Instance, 4)
	srv.OnRunInstance = func(in ec2.Instance) {
		// As the lab does for user-data it cannot boot (none here).
		srv.BootFailed(in.ID, "its user-data sets no networking.hostName, so the lab cannot tell which host it is")
		booted <- in
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rec := &recorder{srv: srv, got: map[string][][]byte{}}
	front := httptest.NewServer(rec)
	defer front.Close()
	cli := awscli.New(t, srv, region, front.URL)

	if got := awscli.String(cli.JSON("describe-account-attributes", "--attribute-names", "supported-platforms"),
		"AccountAttributes", 0, "AttributeValues", 0, "AttributeValue"); got != "VPC" {
		t.Errorf("supported-platforms = %q, want VPC", got)
	}
	zones := cli.JSON("describe-availability-zones")
	if n := len(awscli.Get(zones, "AvailabilityZones").([]any)); n != 4 || awscli.String(zones, "AvailabilityZones", 0, "ZoneName") != region+"a" ||
		awscli.String(zones, "AvailabilityZones", 0, "State") != "available" {
		t.Errorf("zones: %v", zones)
	}
	if v := awscli.Get(cli.JSON("get-ebs-encryption-by-default"), "EbsEncryptionByDefault"); v != false {
		t.Errorf("EbsEncryptionByDefault = %v", v)
	}

	// CreateVpc answers pending; the VPC is available next.
	vpc := cli.JSON("create-vpc", "--cidr-block", "10.40.0.0/16")
	vpcID := awscli.String(vpc, "Vpc", "VpcId")
	if s := awscli.String(vpc, "Vpc", "State"); s != "pending" {
		t.Errorf("create-vpc state %q, want pending", s)
	}
	if s := awscli.String(cli.JSON("describe-vpcs", "--vpc-ids", vpcID), "Vpcs", 0, "State"); s != "available" {
		t.Errorf("describe-vpcs state %q, want available", s)
	}
	if v := awscli.Get(cli.JSON("describe-vpc-attribute", "--vpc-id", vpcID, "--attribute", "enableNetworkAddressUsageMetrics"),
		"EnableNetworkAddressUsageMetrics", "Value"); v != false {
		t.Errorf("enableNetworkAddressUsageMetrics = %v", v)
	}
	acls := cli.JSON("describe-network-acls", "--filters", "Name=vpc-id,Values="+vpcID, "Name=default,Values=true")
	if n := len(awscli.Get(acls, "NetworkAcls").([]any)); n != 1 || awscli.Get(acls, "NetworkAcls", 0, "Entries", 0, "RuleNumber") == nil {
		t.Errorf("default network ACL of %s: %v", vpcID, acls)
	}

	// Terraform's fleet, through the CLI.
	a := awscli.BuildAccount(cli, srv)
	keys := cli.JSON("describe-key-pairs", "--key-names", a.KeyName)
	if awscli.String(keys, "KeyPairs", 0, "KeyType") != "ed25519" || !strings.HasPrefix(awscli.String(keys, "KeyPairs", 0, "KeyPairId"), "key-") ||
		awscli.String(keys, "KeyPairs", 0, "KeyFingerprint") == "" {
		t.Errorf("describe-key-pairs: %v", keys)
	}
	out := cli.Fail("run-instances", "--image-id", a.ImageID, "--instance-type", "t3.micro", "--subnet-id", a.SubnetIDs[0], "--key-name", "no-such-key")
	if !strings.Contains(out, "InvalidKeyPair.NotFound") || !strings.Contains(out, "The key pair 'no-such-key' does not exist") {
		t.Errorf("run-instances with an unknown key name: %s", out)
	}
	mine := cli.JSON("describe-images", "--owners", "self")
	if n := len(awscli.Get(mine, "Images").([]any)); n != 1 || awscli.String(mine, "Images", 0, "ImageId") != a.ImageID ||
		awscli.String(mine, "Images", 0, "OwnerId") != ec2.DefaultAccountID {
		t.Errorf("images owned by self: %v (registered %s)", mine, a.ImageID)
	}

	// The instance: pending without a public address, then running with one.
	var launched ec2.Instance
	select {
	case launched = <-booted:
	case <-time.After(10 * time.Second):
		t.Fatal("OnRunInstance was not called")
	}
	if launched.ID != a.InstanceID || launched.PublicIP != "" {
		t.Errorf("at launch: %+v, want %s pending without a public IP", launched, a.InstanceID)
	}
	var in any
	testkit.WaitFor(t, a.InstanceID+" to be running", 20*time.Second, func() bool {
		in = awscli.Get(cli.JSON("describe-instances", "--instance-ids", a.InstanceID), "Reservations", 0, "Instances", 0)
		state := awscli.String(in, "State", "Name")
		if state == "pending" && awscli.String(in, "PublicIpAddress") != "" {
			t.Fatalf("a pending instance has public IP %s", awscli.String(in, "PublicIpAddress"))
		}
		return state == "running"
	})
	if awscli.String(in, "State", "Name") != "running" || awscli.String(in, "PublicIpAddress") == "" ||
		awscli.String(in, "NetworkInterfaces", 0, "Association", "PublicIp") != awscli.String(in, "PublicIpAddress") ||
		awscli.String(in, "NetworkInterfaces", 0, "SubnetId") != a.SubnetIDs[0] ||
		awscli.String(in, "MetadataOptions", "HttpTokens") != "required" || awscli.Get(in, "CpuOptions", "CoreCount") != 1.0 ||
		awscli.String(in, "KeyName") != a.KeyName {
		b, _ := json.MarshalIndent(in, "", "  ")
		t.Errorf("the running instance:\n%s", b)
	}
	vol := cli.JSON("describe-volumes", "--filters", "Name=attachment.instance-id,Values="+a.InstanceID)
	if k := awscli.String(vol, "Volumes", 0, "KmsKeyId"); !strings.HasPrefix(k, "arn:aws:kms:"+region+":"+ec2.DefaultAccountID+":key/") {
		t.Errorf("the encrypted root volume's KmsKeyId = %q", k)
	}
	if v := awscli.Get(cli.JSON("describe-instance-types", "--instance-types", "t3.medium"), "InstanceTypes", 0, "VCpuInfo", "DefaultVCpus"); v != 2.0 {
		t.Errorf("t3.medium vCPUs = %v", v)
	}
	if c := awscli.String(cli.JSON("describe-instance-credit-specifications", "--instance-ids", a.InstanceID),
		"InstanceCreditSpecifications", 0, "CpuCredits"); c != "unlimited" {
		t.Errorf("credits = %q, want unlimited (T3's default)", c)
	}
	if v := awscli.Get(cli.JSON("describe-instance-attribute", "--instance-id", a.InstanceID, "--attribute", "disableApiStop"),
		"DisableApiStop", "Value"); v != false {
		t.Errorf("disableApiStop = %v", v)
	}
	tags := cli.JSON("describe-tags", "--filters", "Name=resource-id,Values="+a.VpcID)
	if awscli.String(tags, "Tags", 0, "Key") != "Name" || awscli.String(tags, "Tags", 0, "Value") != "ducksnest-vpc" ||
		awscli.String(tags, "Tags", 0, "ResourceType") != "vpc" {
		t.Errorf("describe-tags of %s: %v", a.VpcID, tags)
	}

	// The lab could not boot this instance's user-data, and says so.
	console := cli.JSON("get-console-output", "--instance-id", a.InstanceID)
	if !strings.Contains(awscli.String(console, "Output"), "boots no lab host: its user-data sets no networking.hostName") {
		t.Errorf("console output: %v", console)
	}
	if s := awscli.String(cli.JSON("describe-instance-status", "--instance-ids", a.InstanceID), "InstanceStatuses", 0, "InstanceStatus", "Status"); s != "impaired" {
		t.Errorf("instance status %q, want impaired", s)
	}

	checkShapes(t, rec.got)
}

// checkShapes checks every recorded answer against the output shape the
// AWS CLI's botocore service model gives its action: every element is a
// member of its shape (by locationName; a list's elements are its
// members'), booleans are true or false, numbers parse, timestamps are
// ISO 8601.
func checkShapes(t *testing.T, answers map[string][][]byte) {
	t.Helper()
	raw, err := os.ReadFile(awscli.ServiceModel(t))
	if err != nil {
		t.Fatal(err)
	}
	var model struct {
		Operations map[string]struct {
			Output *struct{ Shape string } `json:"output"`
		} `json:"operations"`
		Shapes map[string]shape `json:"shapes"`
	}
	if err := json.Unmarshal(raw, &model); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for action, bodies := range answers {
		op, ok := model.Operations[action]
		if !ok {
			t.Errorf("%s is not an EC2 action of the service model", action)
			continue
		}
		for _, body := range bodies {
			var root node
			if err := xml.Unmarshal(body, &root); err != nil {
				t.Errorf("%s: answer is not XML: %v", action, err)
				continue
			}
			if root.XMLName.Local != action+"Response" {
				t.Errorf("%s: root element %s", action, root.XMLName.Local)
			}
			var out shape
			if op.Output != nil {
				out = model.Shapes[op.Output.Shape]
			}
			for _, c := range root.Children {
				switch {
				case c.XMLName.Local == "requestId":
					continue
				case c.XMLName.Local == "return" && op.Output == nil:
					// EC2 answers <return>true</return> where the model
					// declares no output (the API reference's examples).
					continue
				case newerThanModel[action+"."+c.XMLName.Local]:
					continue
				}
				checkNode(t, action, model.Shapes, out, c, c.XMLName.Local)
			}
			checked++
		}
	}
	if checked < 30 {
		t.Errorf("only %d answers were checked against the service model", checked)
	}
	t.Logf("%d answers of %d actions checked against %s", checked, len(answers), awscli.ServiceModel(t))
}

// newerThanModel are elements of EC2 answers that the EC2 API gained after
// the service model the Debian CLI ships (aws-sdk-go-v2's EC2 client has
// them): the CLI skips them, as it skips anything it does not know.
var newerThanModel = map[string]bool{
	"CreateSecurityGroup.securityGroupArn": true, // CreateSecurityGroupOutput.SecurityGroupArn
}

type shape struct {
	Type    string `json:"type"`
	Members map[string]struct {
		Shape        string `json:"shape"`
		LocationName string `json:"locationName"`
	} `json:"members"`
	Member *struct {
		Shape        string `json:"shape"`
		LocationName string `json:"locationName"`
	} `json:"member"`
}

type node struct {
	XMLName  xml.Name
	Children []node `xml:",any"`
	Text     string `xml:",chardata"`
}

// checkNode checks element n, a child of a structure of shape parent.
func checkNode(t *testing.T, action string, shapes map[string]shape, parent shape, n node, path string) {
	t.Helper()
	var memberShape string
	for name, m := range parent.Members {
		if m.LocationName == n.XMLName.Local || m.LocationName == "" && name == n.XMLName.Local {
			memberShape = m.Shape
		}
	}
	if memberShape == "" {
		t.Errorf("%s: element %s is not in the service model", action, path)
		return
	}
	checkValue(t, action, shapes, shapes[memberShape], n, path)
}

func checkValue(t *testing.T, action string, shapes map[string]shape, s shape, n node, path string) {
	t.Helper()
	text := strings.TrimSpace(n.Text)
	switch s.Type {
	case "structure":
		for _, c := range n.Children {
			checkNode(t, action, shapes, s, c, path+"."+c.XMLName.Local)
		}
	case "list":
		for _, c := range n.Children {
			if want := s.Member.LocationName; c.XMLName.Local != want && !(want == "" && c.XMLName.Local == "member") {
				t.Errorf("%s: %s holds <%s>, the model's list items are <%s>", action, path, c.XMLName.Local, want)
				continue
			}
			checkValue(t, action, shapes, shapes[s.Member.Shape], c, path+"[]")
		}
	case "boolean":
		if text != "true" && text != "false" {
			t.Errorf("%s: %s = %q, not a boolean", action, path, text)
		}
	case "integer", "long":
		if _, err := strconv.ParseInt(text, 10, 64); err != nil {
			t.Errorf("%s: %s = %q, not an integer", action, path, text)
		}
	case "double", "float":
		if _, err := strconv.ParseFloat(text, 64); err != nil {
			t.Errorf("%s: %s = %q, not a number", action, path, text)
		}
	case "timestamp":
		if _, err := time.Parse(time.RFC3339, text); err != nil {
			t.Errorf("%s: %s = %q, not an ISO 8601 time", action, path, text)
		}
	default:
		if len(n.Children) > 0 {
			t.Errorf("%s: %s is a %s in the model, yet holds elements", action, path, s.Type)
		}
	}
}
