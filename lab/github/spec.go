package github

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// subsetJSON is the cut of GitHub's OpenAPI description the server checks
// requests against; openapi/cut.mjs makes it.
//
//go:embed openapi/api.github.com.subset.json
var subsetJSON []byte

// SubsetVersion is the version of npm @octokit/openapi the embedded subset
// was cut from.
func SubsetVersion() string {
	var v struct {
		Info struct {
			Subset struct {
				Version string `json:"version"`
			} `json:"x-nestbot-subset"`
		} `json:"info"`
	}
	json.Unmarshal(subsetJSON, &v)
	return v.Info.Subset.Version
}

// Operations lists the operations the server answers, as "METHOD /path"
// with GitHub's path templates, sorted.
func Operations() []string {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	json.Unmarshal(subsetJSON, &doc)
	var ops []string
	for p, item := range doc.Paths {
		for m := range item {
			if m != "parameters" {
				ops = append(ops, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(ops)
	return ops
}

// loadSpec loads and validates the subset and routes it. The servers it
// names (api.github.com) are dropped: the router matches the path alone.
func loadSpec() (*openapi3.T, routers.Router, []*regexp.Regexp, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(subsetJSON)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("labgithub: load the OpenAPI subset: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		return nil, nil, nil, fmt.Errorf("labgithub: the OpenAPI subset is invalid: %w", err)
	}
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("labgithub: route the OpenAPI subset: %w", err)
	}
	return doc, router, multiSegmentPaths(doc), nil
}

// multiSegmentPaths makes, for each path template with a parameter GitHub
// marks x-multi-segment (a file path, a ref such as "heads/feature/x"), a
// pattern that captures that parameter, so that its slashes can be escaped
// before routing: the router matches one segment per parameter.
func multiSegmentPaths(doc *openapi3.T) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, path := range doc.Paths.InMatchingOrder() {
		multi := map[string]bool{}
		item := doc.Paths.Value(path)
		for _, op := range item.Operations() {
			for _, p := range op.Parameters {
				if p.Value != nil && p.Value.In == "path" && p.Value.Extensions["x-multi-segment"] == true {
					multi[p.Value.Name] = true
				}
			}
		}
		if len(multi) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString("^")
		rest := path
		for {
			i := strings.Index(rest, "{")
			if i < 0 {
				b.WriteString(regexp.QuoteMeta(rest))
				break
			}
			j := strings.Index(rest[i:], "}") + i
			b.WriteString(regexp.QuoteMeta(rest[:i]))
			if multi[rest[i+1:j]] {
				b.WriteString("(.+)")
			} else {
				b.WriteString("[^/]+")
			}
			rest = rest[j+1:]
		}
		b.WriteString("$")
		out = append(out, regexp.MustCompile(b.String()))
	}
	return out
}

// escapeMultiSegment escapes the slashes of a multi-segment parameter in
// an escaped request path.
func (s *Server) escapeMultiSegment(escaped string) string {
	for _, re := range s.multi {
		m := re.FindStringSubmatchIndex(escaped)
		if m == nil {
			continue
		}
		var b strings.Builder
		at := 0
		for g := 1; g < len(m)/2; g++ {
			lo, hi := m[2*g], m[2*g+1]
			b.WriteString(escaped[at:lo])
			b.WriteString(strings.ReplaceAll(escaped[lo:hi], "/", "%2F"))
			at = hi
		}
		b.WriteString(escaped[at:])
		return b.String()
	}
	return escaped
}

func validationOptions() *openapi3filter.Options {
	o := &openapi3filter.Options{MultiError: true}
	o.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		p := err.JSONPointer()
		if len(p) == 0 {
			return err.Reason
		}
		return "/" + strings.Join(p, "/") + ": " + err.Reason
	})
	return o
}

// checkResponse records a response of the server's own that the
// description does not allow: a defect of the lab, not of nestbot.
func (s *Server) checkResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, what, op string, out reply, body []byte) {
	if out.status >= 300 {
		return
	}
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 out.status,
		Header:                 h,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	})
	if err != nil {
		s.violation("lab defect: the response to %s (%s) does not match GitHub's description: %s", what, op, validationMessage(err))
	}
}

// validationMessage flattens kin-openapi's errors into one line each.
func validationMessage(err error) string {
	var lines []string
	var walk func(error)
	walk = func(err error) {
		var me openapi3.MultiError
		if errors.As(err, &me) {
			for _, e := range me {
				walk(e)
			}
			return
		}
		var re *openapi3filter.RequestError
		if errors.As(err, &re) {
			where := "request"
			if re.Parameter != nil {
				where = fmt.Sprintf("parameter %q in %s", re.Parameter.Name, re.Parameter.In)
			} else if re.RequestBody != nil {
				where = "request body"
			}
			if re.Err != nil {
				var inner openapi3.MultiError
				if errors.As(re.Err, &inner) {
					for _, e := range inner {
						lines = append(lines, where+": "+firstLine(e.Error()))
					}
					return
				}
				lines = append(lines, where+": "+firstLine(re.Err.Error()))
				return
			}
			lines = append(lines, where+": "+re.Reason)
			return
		}
		var rse *openapi3filter.ResponseError
		if errors.As(err, &rse) {
			if rse.Err != nil {
				var inner openapi3.MultiError
				if errors.As(rse.Err, &inner) {
					for _, e := range inner {
						lines = append(lines, "response body: "+firstLine(e.Error()))
					}
					return
				}
				lines = append(lines, "response: "+rse.Reason+": "+firstLine(rse.Err.Error()))
				return
			}
			lines = append(lines, "response: "+rse.Reason)
			return
		}
		lines = append(lines, firstLine(err.Error()))
	}
	walk(err)
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

func isJSONSyntax(err error) bool {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return true
	}
	var pe *openapi3filter.ParseError
	return errors.As(err, &pe) && pe.Kind == openapi3filter.KindInvalidFormat
}
