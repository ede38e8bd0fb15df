package github

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckRun120AnnotationsOneCreateTwoUpdates(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	var anns []Annotation
	for i := range 120 {
		anns = append(anns, Annotation{Path: "nest.yaml", StartLine: i + 1, StartColumn: 3, EndColumn: 9,
			Level: "failure", Title: "invalid", Message: fmt.Sprintf("error %d", i+1)})
	}
	id, err := c.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: "deadbeef", Status: "completed", Conclusion: "failure",
		Title: "nest.yaml is invalid", Summary: "120 errors", Annotations: anns})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.count("POST /repos/{owner}/{repo}/check-runs"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
	if n := f.count("PATCH /repos/{owner}/{repo}/check-runs/{id}"); n != 2 {
		t.Errorf("%d updates, want 2", n)
	}
	cr := f.checkRuns[id]
	if fmt.Sprint(cr.AnnotationsPerRequest) != "[50 50 20]" {
		t.Errorf("annotations per request %v, want [50 50 20]", cr.AnnotationsPerRequest)
	}
	if len(cr.Annotations) != 120 {
		t.Fatalf("%d annotations kept, want 120", len(cr.Annotations))
	}
	for i, a := range cr.Annotations {
		if a["message"] != fmt.Sprintf("error %d", i+1) || a["start_line"] != float64(i+1) || a["end_line"] != float64(i+1) ||
			a["path"] != "nest.yaml" || a["annotation_level"] != "failure" || a["start_column"] != float64(3) {
			t.Fatalf("annotation %d is %v", i+1, a)
		}
	}
	if cr.Name != CheckName || cr.Status != "completed" || cr.Conclusion != "failure" || cr.Title != "nest.yaml is invalid" || !cr.CompletedAtSet {
		t.Errorf("check run %+v", cr)
	}
}

func TestCheckRunInProgressThenCompleted(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
	ctx := testContext(t)
	id, err := c.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: "abc123", Status: "in_progress", ExternalID: "job-7", DetailsURL: "https://example.test/jobs/7"})
	if err != nil {
		t.Fatal(err)
	}
	cr := f.checkRuns[id]
	if cr.Status != "in_progress" || cr.Conclusion != "" || cr.ExternalID != "job-7" || cr.HeadSHA != "abc123" {
		t.Fatalf("after create: %+v", cr)
	}
	long := strings.Repeat("x", 70000)
	if err := c.UpdateCheckRun(ctx, testRepo, id, CheckRun{Conclusion: "success", Title: "No changes", Summary: long}); err != nil {
		t.Fatal(err)
	}
	if cr.Status != "completed" || cr.Conclusion != "success" || cr.Title != "No changes" {
		t.Fatalf("after update: %+v", cr)
	}
	if n := len([]rune(cr.Summary)); n > 65535 || !strings.HasSuffix(cr.Summary, "(cut to fit GitHub's limit)") {
		t.Errorf("summary of %d characters, want it cut to 65,535 and saying so", n)
	}
}

func TestCheckRunRefusesWhatGitHubWould(t *testing.T) {
	f := newFake(t)
	c, _ := tokenClient(t, f)
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
	if f.writes() != 0 {
		t.Errorf("%d writes for refused check runs", f.writes())
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
