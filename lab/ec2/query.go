package ec2

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params is a decoded EC2 Query request: flat keys such as
// "Filter.1.Value.2" mapped to their (first) value.
type params map[string]string

func parseParams(r *http.Request, body []byte) (params, error) {
	p := params{}
	add := func(v url.Values) {
		for k, vs := range v {
			if len(vs) > 0 {
				p[k] = vs[0]
			}
		}
	}
	add(r.URL.Query())
	if r.Method == http.MethodPost && len(body) > 0 {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errf(400, "MalformedQueryString", "The request body is not a valid query string: %v", err)
		}
		add(v)
	}
	return p, nil
}

func (p params) get(k string) string { return p[k] }

func (p params) has(k string) bool { _, ok := p[k]; return ok }

// indexes returns the sorted N of every key "prefix.N" or "prefix.N.*".
func (p params) indexes(prefix string) []int {
	seen := map[int]bool{}
	for k := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// list returns the values of "prefix.1", "prefix.2", … in index order.
func (p params) list(prefix string) []string {
	var out []string
	for _, n := range p.indexes(prefix) {
		if v, ok := p[prefix+"."+strconv.Itoa(n)]; ok {
			out = append(out, v)
		}
	}
	return out
}

// sub returns the keys under "prefix." with the prefix removed.
func (p params) sub(prefix string) params {
	out := params{}
	for k, v := range p {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// items returns sub(prefix.N) for every N, in index order.
func (p params) items(prefix string) []params {
	var out []params
	for _, n := range p.indexes(prefix) {
		out = append(out, p.sub(prefix+"."+strconv.Itoa(n)))
	}
	return out
}

func (p params) require(k string) (string, error) {
	v := p[k]
	if v == "" {
		return "", errf(400, "MissingParameter", "The request must contain the parameter %s", k)
	}
	return v, nil
}

// int returns the integer at k, whether it was present, and a parse error.
func (p params) int(k string) (int, bool, error) {
	v, ok := p[k]
	if !ok || v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, true, errf(400, "InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected an integer.", v, k)
	}
	return n, true, nil
}

// boolean returns the boolean at k and whether it was present.
func (p params) boolean(k string) (bool, bool) {
	v, ok := p[k]
	if !ok || v == "" {
		return false, false
	}
	return strings.EqualFold(v, "true"), true
}

type filter struct {
	name   string
	values []string
}

func (p params) filters() []filter {
	var out []filter
	for _, f := range p.items("Filter") {
		out = append(out, filter{name: f.get("Name"), values: f.list("Value")})
	}
	return out
}

type tag struct{ key, value string }

func (p params) tags(prefix string) []tag {
	var out []tag
	for _, t := range p.items(prefix) {
		out = append(out, tag{key: t.get("Key"), value: t.get("Value")})
	}
	return out
}

// tagSpecs returns TagSpecification.N grouped by resource type, validated.
func (p params) tagSpecs(allowed ...string) (map[string][]tag, error) {
	out := map[string][]tag{}
	for _, ts := range p.items("TagSpecification") {
		rt := ts.get("ResourceType")
		ok := false
		for _, a := range allowed {
			ok = ok || a == rt
		}
		if !ok {
			return nil, errf(400, "InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tags := ts.tags("Tag")
		if err := validateTags(tags); err != nil {
			return nil, err
		}
		out[rt] = append(out[rt], tags...)
	}
	return out, nil
}

func validateTags(tags []tag) error {
	if len(tags) > 50 {
		return errf(400, "TagLimitExceeded", "The maximum number of tags per resource is 50.")
	}
	for _, t := range tags {
		switch {
		case t.key == "" || len(t.key) > 128:
			return errf(400, "InvalidParameterValue", "Tag key must be between 1 and 128 characters long.")
		case len(t.value) > 256:
			return errf(400, "InvalidParameterValue", "Tag value must be at most 256 characters long.")
		case strings.HasPrefix(strings.ToLower(t.key), "aws:"):
			return errf(400, "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
	}
	return nil
}

// paging reads MaxResults/NextToken. limit 0 means "everything".
func (p params) paging(lo, hi int) (limit int, after string, err error) {
	n, ok, err := p.int("MaxResults")
	if err != nil {
		return 0, "", err
	}
	if ok && (n < lo || n > hi) {
		return 0, "", errf(400, "InvalidParameterValue",
			"Value ( %d ) for parameter maxResults is invalid. Expecting a value between %d and %d.", n, lo, hi)
	}
	if tok := p.get("NextToken"); tok != "" {
		b, derr := base64.RawURLEncoding.DecodeString(tok)
		if derr != nil || !strings.HasPrefix(string(b), "lab1:") {
			return 0, "", errf(400, "InvalidPaginationToken", "The specified pagination token is not valid or is expired.")
		}
		after = strings.TrimPrefix(string(b), "lab1:")
	}
	return n, after, nil
}

// paginate returns the page of items (sorted by id) after the id "after",
// and the token for the next page ("" when this is the last one).
func paginate[T any](items []T, id func(T) string, limit int, after string) ([]T, string) {
	start := 0
	if after != "" {
		start = sort.Search(len(items), func(i int) bool { return id(items[i]) > after })
	}
	items = items[start:]
	if limit <= 0 || len(items) <= limit {
		return items, ""
	}
	page := items[:limit]
	return page, base64.RawURLEncoding.EncodeToString([]byte("lab1:" + id(page[len(page)-1])))
}

// apiError is an EC2 error response.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// notFound builds an EC2 "does not exist" error for one or more ids.
func notFound(code, what string, ids []string) *apiError {
	if len(ids) == 1 {
		return errf(400, code, "The %s ID '%s' does not exist", what, ids[0])
	}
	return errf(400, code, "The %s IDs '%s' do not exist", what, strings.Join(ids, ", "))
}

// matchWildcard reports whether s matches pattern, where * matches any run
// of characters and ? any single character (as in EC2 filters).
func matchWildcard(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	// Iterative glob with backtracking on the last *.
	px, sx := 0, 0
	star, match := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			star, match = px, sx
			px++
		case star >= 0:
			px = star + 1
			match++
			sx = match
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// filterFunc gives a resource's values for a filter name, and whether the
// name is a known filter for that resource type.
type filterFunc func(name string) ([]string, bool)

// matchFilters reports whether a resource passes every filter (AND across
// filters, OR across one filter's values).
func matchFilters(filters []filter, values filterFunc) bool {
	for _, f := range filters {
		have, _ := values(f.name)
		ok := false
		for _, want := range f.values {
			for _, h := range have {
				ok = ok || matchWildcard(want, h)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// applyFilters rejects unknown filter names (checked against blank, a zero
// resource) and returns the items that pass every filter.
func applyFilters[T any](items []T, filters []filter, ff func(T) filterFunc, blank T) ([]T, error) {
	for _, f := range filters {
		if _, known := ff(blank)(f.name); !known {
			return nil, errf(400, "InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
	}
	var out []T
	for _, it := range items {
		if matchFilters(filters, ff(it)) {
			out = append(out, it)
		}
	}
	return out, nil
}

// tagFilter handles tag:Key, tag-key and tag-value for any resource.
func tagFilter(tags map[string]string, name string) ([]string, bool) {
	switch {
	case strings.HasPrefix(name, "tag:"):
		if v, ok := tags[strings.TrimPrefix(name, "tag:")]; ok {
			return []string{v}, true
		}
		return nil, true
	case name == "tag-key":
		var out []string
		for k := range tags {
			out = append(out, k)
		}
		return out, true
	case name == "tag-value":
		var out []string
		for _, v := range tags {
			out = append(out, v)
		}
		return out, true
	}
	return nil, false
}

func boolStr(b bool) string { return strconv.FormatBool(b) }

// validID reports whether id looks like an EC2 id with the given prefix
// ("vpc") followed by 8 or 17 lowercase hex digits.
func validID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"-")
	if !ok || (len(rest) != 8 && len(rest) != 17) {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func malformed(code, id, prefix string) *apiError {
	return errf(400, code, "Invalid id: \"%s\" (expecting \"%s-...\")", id, prefix)
}
