package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/logs/logstest"
	"github.com/ducksnest/nestbot/reconcile"
	gogithub "github.com/google/go-github/v93/github"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// echoAuthorization answers requests to path with 422 and a message that
// quotes the request's Authorization header, as a careless proxy might.
func echoAuthorization(path string) func(http.ResponseWriter, *http.Request) bool {
	return func(rw http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		writeJSON(rw, http.StatusUnprocessableEntity, map[string]any{
			"message": "Validation Failed for " + r.Header.Get("Authorization"),
			"errors":  []map[string]any{{"resource": "Issue", "code": "custom", "message": "sent " + r.Header.Get("Authorization")}},
		})
		return true
	}
}

// echoed is the comments path echoAuthorization refuses: issue #2's (the
// drift issue everything opens).
const echoed = "/api/v3/repos/ducksnest/infra/issues/2/comments"

// everything runs every kind of call once and returns the errors.
func everything(t *testing.T, c *Client, w *world) []error {
	t.Helper()
	ctx := testContext(t)
	var errs []error
	marker := reconcile.MarkdownMarker("ducksnest")
	_, err := c.UpsertSticky(ctx, testRepo, w.pr.Number, marker, reconcile.RenderMarkdown(smallPlan("abc", 2)))
	errs = append(errs, err)
	_, err = c.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: w.pr.HeadSHA, Conclusion: "success", Title: "ok", Summary: "ok",
		Annotations: []Annotation{{Path: "nest.yaml", StartLine: 1, Message: "m"}}})
	errs = append(errs, err)
	id, err := c.CreateDeployment(ctx, testRepo, w.pr.HeadSHA, "ducksnest", "apply abc")
	errs = append(errs, err, c.DeploymentStatus(ctx, testRepo, id, "success", "applied", ""))
	_, err = c.SyncIssue(ctx, testRepo, "<!-- nestbot:drift fleet=ducksnest -->", "Drift in ducksnest", "drift", true)
	errs = append(errs, err)
	_, err = c.Comment(ctx, testRepo, 2, "echo") // the front refuses this one, quoting the credential
	errs = append(errs, err)
	_, err = c.GitToken(ctx)
	errs = append(errs, err)
	return errs
}

// assertNoSecret fails when a secret appears in an error, a log line or
// anything the lab's GitHub keeps.
func assertNoSecret(t *testing.T, w *world, logs *logstest.Log, errs []error, secrets ...string) {
	t.Helper()
	refused := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		refused++
		texts := []string{err.Error()}
		if er, ok := errors.AsType[*gogithub.ErrorResponse](err); ok {
			texts = append(texts, er.Error(), fmt.Sprint(er.Errors))
		}
		for _, s := range secrets {
			for _, text := range texts {
				if strings.Contains(text, s) {
					t.Errorf("an error shows a secret: %s", text)
				}
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d calls failed, want 1 (the refused comment): %v", refused, errs)
	}
	var kept []any
	for _, n := range []int{1, 2} {
		comments, err := w.srv.Comments(testRepo.Owner, testRepo.Name, n)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, comments)
	}
	runs, err := w.srv.CheckRuns(testRepo.Owner, testRepo.Name, w.pr.HeadSHA)
	if err != nil {
		t.Fatal(err)
	}
	deployments, err := w.srv.Deployments(testRepo.Owner, testRepo.Name)
	if err != nil {
		t.Fatal(err)
	}
	issues, err := w.srv.Issues(testRepo.Owner, testRepo.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || len(deployments) != 1 || len(issues) != 1 {
		t.Errorf("%d check runs, %d deployments, %d issues; want one of each", len(runs), len(deployments), len(issues))
	}
	state, err := json.Marshal(append(kept, runs, deployments, issues))
	if err != nil {
		t.Fatal(err)
	}
	all := logs.String()
	if !slices.ContainsFunc(strings.Split(all, "\n"), func(l string) bool {
		return strings.Contains(l, "method=POST path="+echoed+" ") && strings.Contains(l, " status=422")
	}) {
		t.Errorf("the log has no line for the refused request:\n%s", all)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("the log shows a secret:\n%s", all)
		}
		if strings.Contains(string(state), s) {
			t.Errorf("a secret reached GitHub in a comment, check run, deployment or issue")
		}
	}
}

// The tokens are legacy ones (40 hex digits, v1.…): none has a shape the
// Client would redact without knowing it (ghp_, ghs_), so what keeps them
// out is that the Client knows its credentials.

func TestCanaryTokenNeverLeaks(t *testing.T) {
	w := setupWith(t, labgithub.Config{LegacyTokens: true})
	w.interceptWith(echoAuthorization(echoed))
	// The Action's GITHUB_TOKEN: the token mode that may create check runs.
	w.token = w.srv.ActionsToken()
	c, logs := tokenClient(t, w)
	errs := everything(t, c, w)
	assertNoSecret(t, w, logs, errs, w.token)
}

func TestCanaryAppCredentialsNeverLeak(t *testing.T) {
	w := setupWith(t, labgithub.Config{LegacyTokens: true})
	w.interceptWith(echoAuthorization(echoed))
	app, logs := appClient(t, w)
	ic := app.Installation(w.srv.App().InstallationID)
	errs := everything(t, ic, w)
	minted, err := ic.GitToken(testContext(t))
	if err != nil || !strings.HasPrefix(minted, "v1.") {
		t.Fatalf("installation token %q (%v), want a legacy one", minted, err)
	}
	if n := w.srv.Calls("apps/create-installation-access-token"); n != 1 {
		t.Fatalf("%d installation tokens minted, want 1 (the one checked for)", n)
	}
	key := string(w.srv.App().PrivateKeyPEM)
	pemBody := strings.Split(key, "\n")[3] // a line from inside the key
	assertNoSecret(t, w, logs, errs, minted, pemBody, "eyJ")
}

func TestRedactShapes(t *testing.T) {
	s := newSecrets("my-static-secret-value")
	for _, text := range []string{
		"my-static-secret-value",
		"ghs_16CharactersAtLeastXYZ",
		"github_pat_11ABCDEFG0123456789_abcdefghijkl",
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MiJ9.c2lnbmF0dXJl",
		"Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
	} {
		got := s.redact("before " + text + " after")
		if !strings.Contains(got, redacted) || strings.Contains(got, text) {
			t.Errorf("redact(%q) = %q", text, got)
		}
	}
	if got := s.redact("installation token for installation 7"); got != "installation token for installation 7" {
		t.Errorf("plain words were redacted: %q", got)
	}
}
