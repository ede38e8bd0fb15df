package github

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// This file holds the shapes of GitHub's answers that are not resources:
// errors and pages.

func writeJSON(w http.ResponseWriter, status int, body any) []byte {
	if body == nil {
		w.WriteHeader(status)
		return nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "labgithub: encode the response: "+err.Error(), http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
	return b
}

// errorBody is GitHub's basic-error shape.
func errorBody(status int, message string) map[string]any {
	return map[string]any{
		"message":           message,
		"documentation_url": "https://docs.github.com/rest",
		"status":            strconv.Itoa(status),
	}
}

func errReply(status int, message string) reply {
	return reply{status: status, body: errorBody(status, message)}
}

func notFound() reply { return errReply(http.StatusNotFound, "Not Found") }

// validationFailed is GitHub's 422 with one error.
func validationFailed(message, resource, field, code string) reply {
	e := map[string]any{"resource": resource, "code": code}
	if field != "" {
		e["field"] = field
	}
	return reply{status: http.StatusUnprocessableEntity, body: map[string]any{
		"message":           message,
		"errors":            []any{e},
		"documentation_url": "https://docs.github.com/rest",
		"status":            "422",
	}}
}

// pageLinks makes the Link header GitHub sends with a page of a list.
func pageLinks(r *http.Request) func(page, last int) string {
	return func(page, last int) string {
		if last <= 1 {
			return ""
		}
		q := r.URL.Query()
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		at := func(p int) string {
			q.Set("page", strconv.Itoa(p))
			u.RawQuery = q.Encode()
			return u.String()
		}
		var links []string
		if page > 1 {
			links = append(links, fmt.Sprintf("<%s>; rel=\"prev\"", at(page-1)))
		}
		if page < last {
			links = append(links, fmt.Sprintf("<%s>; rel=\"next\"", at(page+1)))
			links = append(links, fmt.Sprintf("<%s>; rel=\"last\"", at(last)))
		}
		if page > 1 {
			links = append(links, fmt.Sprintf("<%s>; rel=\"first\"", at(1)))
		}
		return strings.Join(links, ", ")
	}
}

// paginate cuts the page the request asks for (per_page at most 100, as
// on GitHub) out of items and sets the Link header.
func paginate[T any](c *call, items []T) ([]T, http.Header) {
	per := 30
	if v, err := strconv.Atoi(c.query.Get("per_page")); err == nil && v > 0 {
		per = min(v, 100)
	}
	page := 1
	if v, err := strconv.Atoi(c.query.Get("page")); err == nil && v > 0 {
		page = v
	}
	last := max(1, (len(items)+per-1)/per)
	h := http.Header{}
	if l := c.link(page, last); l != "" {
		h.Set("Link", l)
	}
	lo := min((page-1)*per, len(items))
	hi := min(lo+per, len(items))
	return items[lo:hi], h
}
