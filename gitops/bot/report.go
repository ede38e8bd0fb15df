package bot

import (
	"fmt"
	"strings"

	"github.com/ducksnest/nestbot/gitops/fleet"
	"github.com/ducksnest/nestbot/reconcile"
)

// maxReportRows bounds the rows of an apply's report comment.
const maxReportRows = 300

// summaryLine is an apply's outcome in one line.
func summaryLine(res *ApplyResult) string {
	switch {
	case res.Report == nil && res.Err != nil:
		return "failed before applying: " + oneLine(res.Err.Error())
	case res.Report == nil || len(res.Report.Results) == 0:
		return "no changes: the fleet already matched"
	}
	s := fmt.Sprintf("%d applied, %d failed, %d skipped", res.Report.Count(reconcile.StatusApplied),
		res.Report.Count(reconcile.StatusFailed), res.Report.Count(reconcile.StatusSkipped))
	if res.CertCommit != "" {
		s += "; certificates committed as " + fleet.ShortRev(res.CertCommit)
	}
	return s
}

// renderApply is the comment that tells a merged pull request what its
// apply did, plane by plane, and where each host is now.
func renderApply(fleetName string, r applyRun, res *ApplyResult) string {
	var b strings.Builder
	icon, verdict := "✅", "applied"
	if res.Err != nil {
		icon, verdict = "❌", "failed"
	}
	fmt.Fprintf(&b, "### %s nestbot %s `%s` to %s\n\n", icon, verdict, fleet.ShortRev(r.sha), fleetName)
	fmt.Fprintf(&b, "%s.\n\n", capitalize(summaryLine(res)))
	if res.Err != nil {
		fmt.Fprintf(&b, "%s\n", reconcile.MarkdownFenced(cut(res.Err.Error(), 4000)))
	}
	if res.Report != nil && len(res.Report.Results) > 0 {
		rows := 0
		for _, plane := range reconcile.Planes() {
			var lines []string
			for _, x := range res.Report.Results {
				if x.Step.Plane != plane {
					continue
				}
				if rows++; rows > maxReportRows {
					continue
				}
				lines = append(lines, fmt.Sprintf("| `%s` | %s | %s | %s |", x.Step.Address, x.Step.Action, x.Status, cell(x.Detail)))
			}
			if len(lines) == 0 {
				continue
			}
			fmt.Fprintf(&b, "**%s**\n\n| address | action | result | detail |\n| --- | --- | --- | --- |\n%s\n\n", plane, strings.Join(lines, "\n"))
		}
		if rows > maxReportRows {
			fmt.Fprintf(&b, "_%d more steps are not shown; the deployment's log has them all._\n\n", rows-maxReportRows)
		}
	}
	if res.rolled != nil && len(res.rolled.Hosts) > 0 {
		b.WriteString("**hosts now**\n\n| host | state | revision |\n| --- | --- | --- |\n")
		for _, h := range res.rolled.Hosts {
			rev := "(unreachable)"
			if h.Reachable {
				rev = "`" + fleet.ShortRev(h.Now.Revision) + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", h.Name, h.State, rev)
		}
		b.WriteString("\n")
	}
	return cut(b.String(), 65000)
}

// cell is text nestbot did not write (a step's detail, which may quote a
// host) for a table cell: its first line, at most 200 bytes, escaped.
func cell(s string) string { return reconcile.MarkdownText(oneLine(s), 200) }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
