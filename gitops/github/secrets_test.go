package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/reconcile"
	gogithub "github.com/google/go-github/v93/github"
)

// echoAuthorization answers requests to path with 422 and a message that
// quotes the request's Authorization header, as a careless proxy might.
func echoAuthorization(path string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"message": "Validation Failed for " + r.Header.Get("Authorization"),
			"errors":  []map[string]any{{"resource": "Issue", "code": "custom", "message": "sent " + r.Header.Get("Authorization")}},
		})
		return true
	}
}

// everything runs every kind of call once and returns the errors.
func everything(t *testing.T, c *Client, f *fakeGitHub) []error {
	t.Helper()
	ctx := testContext(t)
	var errs []error
	marker := reconcile.MarkdownMarker("ducksnest")
	_, err := c.UpsertSticky(ctx, testRepo, 2, marker, reconcile.RenderMarkdown(smallPlan("abc", 2)))
	errs = append(errs, err)
	_, err = c.CreateCheckRun(ctx, testRepo, CheckRun{HeadSHA: "abc", Conclusion: "success", Title: "ok", Summary: "ok",
		Annotations: []Annotation{{Path: "nest.yaml", StartLine: 1, Message: "m"}}})
	errs = append(errs, err)
	id, err := c.CreateDeployment(ctx, testRepo, "abc", "ducksnest", "apply abc")
	errs = append(errs, err, c.DeploymentStatus(ctx, testRepo, id, "success", "applied", ""))
	_, err = c.SyncIssue(ctx, testRepo, "<!-- nestbot:drift fleet=ducksnest -->", "Drift in ducksnest", "drift", true)
	errs = append(errs, err)
	_, err = c.Comment(ctx, testRepo, 1, "echo") // the fake refuses this one, quoting the credential
	errs = append(errs, err)
	_, err = c.GitToken(ctx)
	errs = append(errs, err)
	return errs
}

// assertNoSecret fails when a secret appears in an error, a log line or
// anything the fake GitHub keeps.
func assertNoSecret(t *testing.T, f *fakeGitHub, logs *logLines, errs []error, secrets ...string) {
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
	f.mu.Lock()
	state, err := json.Marshal([]any{f.comments, f.checkRuns, f.deployments, f.issues})
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	all := logs.all()
	if !strings.Contains(all, "POST /repos/ducksnest/infra/issues/1/comments: 422") {
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

func TestCanaryTokenNeverLeaks(t *testing.T) {
	f := newFake(t)
	const canary = "canary-7f3a9c-DO-NOT-LEAK-0123456789"
	f.token = canary
	f.intercept = echoAuthorization("/repos/ducksnest/infra/issues/1/comments")
	c, logs := tokenClient(t, f)
	errs := everything(t, c, f)
	assertNoSecret(t, f, logs, errs, canary)
}

func TestCanaryAppCredentialsNeverLeak(t *testing.T) {
	f, key := appFake(t)
	f.tokenPre = "canary-installation-token-"
	f.intercept = echoAuthorization("/repos/ducksnest/infra/issues/1/comments")
	app, logs := appClient(t, f, key)
	ic := app.Installation(9)
	errs := everything(t, ic, f)
	var minted []string
	for tok := range f.tokens {
		minted = append(minted, tok)
	}
	if len(minted) == 0 {
		t.Fatal("no token was minted")
	}
	pemBody := strings.Split(string(key), "\n")[3] // a line from inside the key
	assertNoSecret(t, f, logs, errs, append(minted, pemBody, "canary-installation-token-", "eyJ")...)
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
