package github

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// TestEveryOperationHasAHandler: the subset and the server's handlers
// name the same operations.
func TestEveryOperationHasAHandler(t *testing.T) {
	doc, _, _, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			n++
			if handlerFor(op.OperationID) == nil {
				t.Errorf("%s %s (%s) has no handler", method, path, op.OperationID)
			}
		}
	}
	if n != len(Operations()) {
		t.Errorf("%d operations routed, Operations lists %d", n, len(Operations()))
	}
}

// TestMultiSegmentPaths: file paths and refs with slashes reach their
// operation whole.
func TestMultiSegmentPaths(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string][2]string{
		"/repos/o/r/contents/infra/nix/flake.nix":       {"repos/get-content", "infra/nix/flake.nix"},
		"/repos/o/r/commits/feature/x/check-runs":       {"checks/list-for-ref", "feature/x"},
		"/repos/o/r/commits/refs/heads/main/check-runs": {"checks/list-for-ref", "refs/heads/main"},
		"/repos/o/r/commits/abc123/pulls":               {"repos/list-pull-requests-associated-with-commit", "abc123"},
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.URL.RawPath = s.escapeMultiSegment(req.URL.EscapedPath())
		route, params, err := s.router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		var got string
		for _, v := range params {
			if strings.Contains(v, "%2F") || v == want[1] || strings.ReplaceAll(v, "%2F", "/") == want[1] {
				got = strings.ReplaceAll(v, "%2F", "/")
			}
		}
		if route.Operation.OperationID != want[0] || got != want[1] {
			t.Errorf("%s: %s %q, want %s %q", path, route.Operation.OperationID, got, want[0], want[1])
		}
	}
}

// TestResponsesAreChecked: a response of the server's own that misses
// what the description requires is recorded as a lab defect.
func TestResponsesAreChecked(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := httptest.NewRequest(http.MethodGet, "/repos/o/r", nil)
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatal(err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions()}
	s.checkResponse(context.Background(), in, "GET /repos/o/r", "repos/get", reply{status: 200}, []byte(`{"id": 1}`))
	v := s.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "lab defect") || !strings.Contains(v[0], "full_name") {
		t.Errorf("violations: %q", v)
	}
}
