package webhook

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ducksnest/nestbot/internal/fixtures"
)

// TestParseReadsAsEncodingJSON: intake's reading of a payload (parse) is
// encoding/json's, which the handlers read with (go-github): for every
// example GitHub publishes, of every event, the fields intake reads are
// the same.
func TestParseReadsAsEncodingJSON(t *testing.T) {
	dir := fixtures.Package(t, "@octokit/webhooks-examples")
	data, err := os.ReadFile(filepath.Join(dir, "api.github.com", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index []struct {
		Name     string            `json:"name"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range index {
		for i, raw := range e.Examples {
			var want payload
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("%s example %d: encoding/json: %v", e.Name, i, err)
			}
			got, err := parse(e.Name, raw)
			if err != nil && want.Repository != nil {
				t.Errorf("%s example %d: %v", e.Name, i, err)
				continue
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("%s example %d: intake reads\n  %+v\nencoding/json reads\n  %+v", e.Name, i, got, want)
			}
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d examples compared", n)
	}
}

// TestParseReadsAdversarialPayloadsAsEncodingJSON: where one reader of
// JSON may differ from another — repeated names, names in other case,
// bytes that are not UTF-8, escapes, nulls, wrong types, trailing data —
// intake reads as encoding/json does, and refuses what it refuses.
func TestParseReadsAdversarialPayloadsAsEncodingJSON(t *testing.T) {
	const repo = `"repository":{"full_name":"o/r","default_branch":"main"}`
	for _, body := range []string{
		`{"ref":"refs/heads/feature","ref":"refs/heads/main",` + repo + `}`,
		`{"ref":"refs/heads/main","Ref":"refs/heads/feature",` + repo + `}`,
		`{"REF":"refs/heads/main","REPOSITORY":{"FULL_NAME":"o/r","Default_Branch":"main"}}`,
		`{"ref":"refs/heads/main","repository":{"fullname":"o/r","full-name":"x/y","default_branch":"main"}}`,
		`{"ref":"refs/heads/main","repository":{"full_name":"a/b"},"repository":{"default_branch":"main"}}`,
		`{"ref":"refs/heads/main","repository":{"full_name":"o/r\xff\xfe","default_branch":"main"}}`,
		"{\"ref\":\"refs/heads/main\",\"repository\":{\"full_name\":\"o/r\xff\",\"default_branch\":\"main\"}}",
		`{"ref":"refs\/heads\/ma\u0069n",` + repo + `}`,
		`{"ref":"refs/heads/main\ud800",` + repo + `}`,
		`{"ref":null,"deleted":null,` + repo + `}`,
		`{"ref":"refs/heads/main","deleted":"true",` + repo + `}`,
		`{"action":"created","issue":{"number":4,"pull_request":null},"comment":{"body":"/nest"},` + repo + `}`,
		`{"action":"created","issue":{"number":4.0,"pull_request":{}},"comment":{"body":"/nest"},` + repo + `}`,
		`{"action":"created","issue":{"number":4e0},` + repo + `}`,
		`{"number":-1,"action":"opened",` + repo + `}`,
		`{"ref":"refs/heads/main",` + repo + `} {}`,
		`{"ref":"refs/heads/main",` + repo + `,}`,
		`[` + repo + `]`,
		`{"ref":"refs/heads/main",` + repo + `,"pull_request":{"head":{"sha":"a"},"head":{"sha":"b"}}}`,
	} {
		var want payload
		werr := json.Unmarshal([]byte(body), &want)
		got, gerr := parse("push", []byte(body))
		var pe *PayloadError
		if gerr != nil && !errors.As(gerr, &pe) {
			t.Errorf("%s: error %v is not a *PayloadError", body, gerr)
		}
		switch {
		case werr != nil && gerr == nil:
			t.Errorf("%s: intake reads %+v; encoding/json refuses it: %v", body, got, werr)
		case werr == nil && gerr != nil && want.Repository != nil && strings.Contains(want.Repository.FullName, "/"):
			t.Errorf("%s: intake refuses it (%v); encoding/json reads %+v", body, gerr, want)
		case werr == nil && gerr == nil && !reflect.DeepEqual(got, want):
			t.Errorf("%s: intake reads\n  %+v\nencoding/json reads\n  %+v", body, got, want)
		}
	}
}
