package github

import (
	"strings"
	"testing"
)

func TestCheckRunRefusesWhatGitHubWould(t *testing.T) {
	w := setup(t)
	c, _ := tokenClient(t, w)
	ctx := testContext(t)
	for name, tc := range map[string]struct {
		cr   CheckRun
		want string
	}{
		"no head":               {CheckRun{Status: "queued"}, "no head commit"},
		"completed, no verdict": {CheckRun{HeadSHA: "a", Status: "completed"}, "needs a conclusion"},
		"bad conclusion":        {CheckRun{HeadSHA: "a", Conclusion: "ok"}, `conclusion "ok"`},
		"bad status":            {CheckRun{HeadSHA: "a", Status: "done"}, `status "done"`},
		"verdict in progress":   {CheckRun{HeadSHA: "a", Status: "in_progress", Conclusion: "success"}, "completes the run"},
		"bad level":             {CheckRun{HeadSHA: "a", Annotations: []Annotation{{Path: "nest.yaml", StartLine: 2, Level: "error", Message: "m"}}}, `level "error" at nest.yaml:2`},
		"no path":               {CheckRun{HeadSHA: "a", Annotations: []Annotation{{StartLine: 2, Message: "m"}}}, "annotation 1: no path"},
	} {
		_, err := c.CreateCheckRun(ctx, testRepo, tc.cr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
	if n := w.srv.Writes(); n != 0 {
		t.Errorf("%d writes for refused check runs", n)
	}
}

func TestAnnotationColumnsOnlyOnOneLine(t *testing.T) {
	a, err := annotation(Annotation{Path: "nest.yaml", StartLine: 3, EndLine: 5, StartColumn: 2, EndColumn: 4, Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if a.StartColumn != nil || a.EndColumn != nil || *a.AnnotationLevel != "failure" {
		t.Errorf("multi-line annotation %+v: want no columns (GitHub refuses them) and level failure", a)
	}
	a, _ = annotation(Annotation{Path: "nest.yaml", Message: "m"})
	if *a.StartLine != 1 || *a.EndLine != 1 {
		t.Errorf("an annotation without a line marks line %d-%d, want 1", *a.StartLine, *a.EndLine)
	}
}
