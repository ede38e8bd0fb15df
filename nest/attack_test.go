package nest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// aliasBomb is the attack of issue 12 (5): a 112 KB nest.yaml whose one
// anchored 100 KB string is aliased 3,000 times, each alias a bad CIDR whose
// error would repeat the whole value.
func aliasBomb() []byte {
	var b strings.Builder
	b.WriteString("version: 1\nname: bomb\naws:\n  region: eu-west-1\n  vpc: {cidr: 10.0.0.0/16}\n  subnets: {a: {cidr: 10.0.0.0/24, zone: eu-west-1a}}\n")
	b.WriteString("  security_group:\n    ingress:\n      - protocol: tcp\n        ports: 22\n        cidrs: [&a \"")
	b.WriteString(strings.Repeat("A", 100<<10))
	b.WriteString("\"")
	for range 3000 {
		b.WriteString(", *a")
	}
	b.WriteString("]\nhosts:\n  box: {roles: [worker]}\n")
	return []byte(b.String())
}

// TestMain lets the test binary parse the alias bomb in a process of its
// own (NEST_TEST_ALIAS_BOMB=1), so a test can measure its peak memory.
func TestMain(m *testing.M) {
	if os.Getenv("NEST_TEST_ALIAS_BOMB") == "1" {
		_, err := Parse("nest.yaml", aliasBomb())
		var errs Errors
		if !errors.As(err, &errs) {
			fmt.Printf("not refused: %v\n", err)
			os.Exit(3)
		}
		msg := err.Error()
		fmt.Printf("%d errors, %d bytes of messages\n%.300s\n", len(errs), len(msg), msg)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAliasBombFailsFastWithinBoundedMemory: the alias bomb is refused, in
// a process whose peak RSS stays under 256 MB, with messages of bounded size.
// Before aliases were bounded by bytes it took the process past 1 GB.
func TestAliasBombFailsFastWithinBoundedMemory(t *testing.T) {
	if n := len(aliasBomb()); n < 110<<10 || n > 115<<10 {
		t.Fatalf("the bomb is %d bytes, want about 112 KB", n)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NEST_TEST_ALIAS_BOMB=1", "GOGC=100", "GOMEMLIMIT=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the parsing process: %v\n%s", err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no resource usage for the child process")
	}
	rss := ru.Maxrss << 10 // kilobytes on Linux
	t.Logf("peak RSS %d MB; %s", rss>>20, strings.SplitN(string(out), "\n", 2)[0])
	if rss > 256<<20 {
		t.Errorf("parsing the alias bomb peaked at %d MB RSS, want under 256 MB", rss>>20)
	}
	var total int
	if _, err := fmt.Sscanf(string(out), "%d errors, %d bytes", new(int), &total); err != nil {
		t.Fatalf("child said %q", out)
	}
	if total > 64<<10 {
		t.Errorf("the errors hold %d bytes of text, want at most 64 KB", total)
	}
	if !strings.Contains(string(out), "alias") {
		t.Errorf("the errors do not say the aliases were refused:\n%s", out)
	}
}

// TestSmallAliasesStillWork: aliases that add little are followed as before.
func TestSmallAliasesStillWork(t *testing.T) {
	f, err := Parse("nest.yaml", []byte("version: 1\nname: tiny\nhosts:\n  a: {roles: &r [worker]}\n  b: {roles: *r}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Hosts["b"].HasRole(RoleWorker) {
		t.Errorf("host b lost the aliased roles: %+v", f.Hosts["b"])
	}
}

// TestErrorsAreBounded: a huge bad value is cut in its message, and past
// maxErrors mistakes the rest are counted.
func TestErrorsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nname: many\nhosts:\n")
	for i := range 300 {
		fmt.Fprintf(&b, "  h%d: {roles: [%s]}\n", i, strings.Repeat("x", 2000))
	}
	_, err := Parse("nest.yaml", []byte(b.String()))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("not refused: %v", err)
	}
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "more mistakes not listed") {
		t.Fatalf("%d errors, the last %q; want %d and a count of the rest", len(errs), errs[len(errs)-1].Msg, maxErrors+1)
	}
	for _, e := range errs {
		if len(e.Msg) > maxMessage || len(e.Hint) > maxMessage {
			t.Fatalf("a message of %d bytes (hint %d), want at most %d", len(e.Msg), len(e.Hint), maxMessage)
		}
	}
}

// TestFileSecretResolvesOnlyInTheSecretsDirectory: a file: reference
// (issue 12 (1): {file: /proc/self/environ} hands the whole environment to
// whoever receives the "secret") resolves only inside the directory the
// operator gave for secrets, through no link out of it, and without one
// not at all. The error names the reference, never what the file holds.
func TestFileSecretResolvesOnlyInTheSecretsDirectory(t *testing.T) {
	secrets := t.TempDir()
	os.WriteFile(secrets+"/ts", []byte("tskey-auth-GOOD\n"), 0o600)
	outside := t.TempDir()
	const canary = "CANARY-outside-secrets-5d1e"
	os.WriteFile(outside+"/key", []byte(canary+"\n"), 0o600)
	os.Symlink(outside+"/key", secrets+"/link")
	getenv := func(string) string { return "" }
	for _, c := range []struct {
		ref  SecretRef
		dir  string
		want string // the value, or "" for refused
	}{
		{SecretRef{File: secrets + "/ts"}, secrets, "tskey-auth-GOOD"},
		{SecretRef{File: "ts"}, secrets, "tskey-auth-GOOD"},
		{SecretRef{File: "/proc/self/environ"}, secrets, ""},
		{SecretRef{File: outside + "/key"}, secrets, ""},
		{SecretRef{File: "../" + filepath.Base(outside) + "/key"}, secrets, ""},
		{SecretRef{File: "link"}, secrets, ""},
		{SecretRef{File: secrets + "/ts"}, "", ""},
	} {
		v, err := c.ref.Resolve(getenv, c.dir)
		switch {
		case c.want != "" && (err != nil || v != c.want):
			t.Errorf("%s in %q: %q, %v; want %q", c.ref, c.dir, v, err, c.want)
		case c.want == "" && err == nil:
			t.Errorf("%s in %q: resolved to %d bytes, want it refused", c.ref, c.dir, len(v))
		case err != nil && strings.Contains(err.Error(), canary):
			t.Errorf("%s: the error quotes the file: %v", c.ref, err)
		}
	}
}
