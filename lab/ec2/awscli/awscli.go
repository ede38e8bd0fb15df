// Package awscli runs the AWS CLI (Debian's awscli package: an independent
// client, with botocore's service model and parsers) against the lab's EC2
// endpoint, for tests, and builds with it an account the way Terraform
// leaves one. It is imported by tests only.
package awscli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/lab/ec2"
)

// debianCLI is where Debian's awscli package installs the command (a
// version manager's aws earlier on PATH may be another CLI altogether).
const debianCLI = "/usr/bin/aws"

// Path returns the AWS CLI to run: Debian's, else the aws on PATH; the test
// is skipped (failed under NESTBOT_REQUIRE_FIXTURES) when there is none.
func Path(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(debianCLI); err == nil {
		return debianCLI
	}
	return fixtures.Require(t, "aws")
}

// ServiceModel returns the path of the EC2 service model (botocore's
// service-2.json) that the CLI at Path ships, or fails t.
func ServiceModel(t testing.TB) string {
	t.Helper()
	for _, pattern := range []string{
		"/usr/lib/python3/dist-packages/awscli/botocore/data/ec2/2016-11-15/service-2.json",
		"/usr/lib/python3*/*-packages/awscli/botocore/data/ec2/2016-11-15/service-2.json",
		"/usr/lib/python3*/*-packages/botocore/data/ec2/2016-11-15/service-2.json",
	} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatalf("no botocore EC2 service model (service-2.json) beside the AWS CLI %s", Path(t))
	return ""
}

// CLI runs aws ec2 … against one endpoint with the lab's credentials and
// nothing of the user's configuration.
type CLI struct {
	T        testing.TB
	Path     string
	Endpoint string
	Region   string
	env      []string
}

// New returns a CLI for the lab server srv (or endpoint, when not empty:
// a proxy in front of it).
func New(t testing.TB, srv *ec2.Server, region, endpoint string) *CLI {
	t.Helper()
	if endpoint == "" {
		endpoint = srv.URL()
	}
	id, secret := srv.Credentials()
	dir := t.TempDir()
	return &CLI{T: t, Path: Path(t), Endpoint: endpoint, Region: region, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
	}}
}

// Run runs aws ec2 args… and returns its standard output and error, and
// whether it succeeded.
func (c *CLI) Run(args ...string) (stdout, stderr string, ok bool) {
	c.T.Helper()
	full := append([]string{"ec2"}, args...)
	full = append(full, "--endpoint-url", c.Endpoint, "--region", c.Region, "--output", "json", "--no-cli-pager")
	cmd := exec.Command(c.Path, full...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

// JSON runs aws ec2 args… and decodes its JSON answer; a failure fails t.
func (c *CLI) JSON(args ...string) map[string]any {
	c.T.Helper()
	out, errOut, ok := c.Run(args...)
	if !ok {
		c.T.Fatalf("aws ec2 %s: %s", strings.Join(args, " "), errOut)
	}
	var v map[string]any
	if strings.TrimSpace(out) == "" {
		return map[string]any{}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.T.Fatalf("aws ec2 %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// Fail runs aws ec2 args…, which must fail, and returns what it printed.
func (c *CLI) Fail(args ...string) string {
	c.T.Helper()
	out, errOut, ok := c.Run(args...)
	if ok {
		c.T.Fatalf("aws ec2 %s succeeded: %s", strings.Join(args, " "), out)
	}
	return errOut
}

// Get walks a decoded JSON answer by keys and list indexes: Get(v,
// "Vpc", "VpcId") or Get(v, "Reservations", 0, "Instances", 0).
func Get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// String is Get as a string ("" when it is not one).
func String(v any, path ...any) string {
	s, _ := Get(v, path...).(string)
	return s
}
