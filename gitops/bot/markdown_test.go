package bot

import (
	"errors"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/reconcile"
)

// hostileOutput is a host's stderr as it reaches an apply's error and its
// step details (issue 12 (9)): it tries to close the code block it is shown
// in and to add markup, an image, HTML and a table row of its own.
const hostileOutput = "switch failed\n```\n![pwned](https://attacker.example/p.png) <img src=x onerror=alert(1)>\n" +
	"| `host.x` | roll | applied | fine |\n~~~\n````"

// fences lists the fenced code blocks of md as [open, close) line ranges,
// as CommonMark reads them: a fence is a line of 3 or more backticks (or
// tildes), closed by a line of at least as many of the same character.
func fences(md string) (blocks [][2]int, lines []string) {
	lines = strings.Split(md, "\n")
	run := func(l string) (byte, int) {
		t := strings.TrimLeft(l, " ")
		if len(l)-len(t) > 3 || t == "" || (t[0] != '`' && t[0] != '~') {
			return 0, 0
		}
		n := 0
		for n < len(t) && t[n] == t[0] {
			n++
		}
		return t[0], n
	}
	for i := 0; i < len(lines); i++ {
		c, n := run(lines[i])
		if n < 3 {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if c2, n2 := run(lines[j]); c2 == c && n2 >= n && strings.Trim(strings.TrimSpace(lines[j]), string(c)) == "" {
				end = j
				break
			}
		}
		blocks = append(blocks, [2]int{i, end})
		i = end
	}
	return blocks, lines
}

// outsideFences is md's text outside its fenced code blocks.
func outsideFences(md string) string {
	blocks, lines := fences(md)
	var out []string
	next := 0
	for _, b := range blocks {
		out = append(out, lines[next:b[0]]...)
		next = b[1] + 1
	}
	if next < len(lines) {
		out = append(out, lines[next:]...)
	}
	return strings.Join(out, "\n")
}

// TestHostOutputStaysInsideItsFence: an apply's report and a failed plan's
// comment show a host's output as code or escaped text: none of its markup
// is outside a code block.
func TestHostOutputStaysInsideItsFence(t *testing.T) {
	res := &ApplyResult{Err: errors.New("rollout: laptop-ultra: " + hostileOutput),
		Report: &reconcile.Report{Results: []reconcile.StepResult{{Step: reconcile.Step{Plane: reconcile.PlaneHosts, Action: reconcile.ActionRoll,
			Address: reconcile.MustParseAddress("host.laptop-ultra")}, Status: reconcile.StatusFailed, Detail: hostileOutput}}}}
	report := renderApply("ducksnest", applyRun{sha: "0123456789abcdef"}, res)
	failed := failureBody("ducksnest", errors.New("observe the live fleet: "+hostileOutput))
	for name, md := range map[string]string{"the apply's report": report, "the failed plan": failed} {
		outside := outsideFences(md)
		for _, bad := range []string{"![pwned]", "<img", "| `host.x` |", "```", "~~~"} {
			if strings.Contains(outside, bad) {
				t.Errorf("%s: %q is outside a code block:\n%s", name, bad, md)
			}
		}
		if !strings.Contains(md, "attacker.example") {
			t.Errorf("%s: the host's output is not shown at all:\n%s", name, md)
		}
	}
}

// TestErrorsNameFilesAsTheRepositoryDoes: an error shown on a pull request
// names files relative to the checkout, nothing of the bot's file system.
func TestErrorsNameFilesAsTheRepositoryDoes(t *testing.T) {
	co := &checkout{dir: "/var/lib/nestbot/work/job-123/repo"}
	cause := errors.New("observe the certificates: /var/lib/nestbot/work/job-123/repo/infra/nix/secrets/certs/secrets.nix:1:1: want {")
	err := co.relative(cause)
	if got := err.Error(); got != "observe the certificates: infra/nix/secrets/certs/secrets.nix:1:1: want {" || !errors.Is(err, cause) {
		t.Errorf("relative = %q (is the cause: %v)", got, errors.Is(err, cause))
	}
}
