package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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
