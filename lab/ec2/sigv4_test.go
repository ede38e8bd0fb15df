package ec2_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/ec2/awscli"
)

// TestAWSCLISignaturesAreChecked: the AWS CLI (botocore: a SigV4 signer
// nestbot did not write, which signs other headers than the Go SDK) is
// accepted with the lab's key, and refused with a wrong secret, by the
// server's check that re-signs through the SDK's own aws/signer/v4.
func TestAWSCLISignaturesAreChecked(t *testing.T) {
	awsCLI := awscli.Path(t)
	e := setup(t)
	id, secret := e.srv.Credentials()
	run := func(secret string, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, awsCLI, append(args, "--endpoint-url", e.srv.URL(), "--region", region, "--output", "json")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
			"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1"}
		return cmd.CombinedOutput()
	}
	out, err := run(secret, "ec2", "create-vpc", "--cidr-block", "10.30.0.0/16")
	if err != nil {
		t.Fatalf("aws ec2 create-vpc: %v\n%s", err, out)
	}
	var created struct{ Vpc struct{ VpcId string } }
	if err := json.Unmarshal(out, &created); err != nil || !strings.HasPrefix(created.Vpc.VpcId, "vpc-") {
		t.Fatalf("aws ec2 create-vpc printed %s (%v)", out, err)
	}

	out, err = run("not-the-secret", "ec2", "create-vpc", "--cidr-block", "10.31.0.0/16")
	if err == nil || !strings.Contains(string(out), "AuthFailure") {
		t.Fatalf("aws ec2 create-vpc with a wrong secret: %v, want AuthFailure:\n%s", err, out)
	}
	out, err = run(secret, "ec2", "describe-vpcs")
	if err != nil {
		t.Fatalf("aws ec2 describe-vpcs: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), `"VpcId"`); n != 1 {
		t.Errorf("%d VPCs after one accepted and one refused create-vpc, want 1:\n%s", n, out)
	}
}
