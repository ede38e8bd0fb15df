package github

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxCommentBody is GitHub's limit on an issue or comment body, in
// characters.
const maxCommentBody = 65536

func (s *Server) findIssue(c *call) (*repo, *issue, bool) {
	r, ok := s.findRepo(c)
	if !ok {
		return nil, nil, false
	}
	n, _ := strconv.Atoi(c.params["issue_number"])
	is, ok := r.issues[n]
	return r, is, ok
}

func listIssues(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	q := c.query
	state := q.Get("state")
	if state == "" {
		state = "open"
	}
	var want []string
	if l := q.Get("labels"); l != "" {
		for _, name := range strings.Split(l, ",") {
			if name = strings.TrimSpace(name); name != "" {
				want = append(want, strings.ToLower(name))
			}
		}
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		since, _ = time.Parse(time.RFC3339, v)
	}
	var list []*issue
	for _, is := range r.issues {
		if state != "all" && is.state != state {
			continue
		}
		if cr := q.Get("creator"); cr != "" && !strings.EqualFold(cr, is.user.login) {
			continue
		}
		if !since.IsZero() && is.updated.Before(since) {
			continue
		}
		if !hasLabels(is, want) {
			continue
		}
		list = append(list, is)
	}
	key := func(is *issue) int64 {
		switch q.Get("sort") {
		case "updated":
			return is.updated.Unix()*1e6 + int64(is.number)
		case "comments":
			return int64(r.commentCount(is.number))*1e6 + int64(is.number)
		}
		return int64(is.number)
	}
	slices.SortFunc(list, func(a, b *issue) int {
		if q.Get("direction") == "asc" {
			return cmp64(key(a), key(b))
		}
		return cmp64(key(b), key(a))
	})
	all := make([]any, 0, len(list))
	for _, is := range list {
		all = append(all, s.issueJSON(r, is))
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func hasLabels(is *issue, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(is.labels, func(l *label) bool { return strings.ToLower(l.name) == w }) {
			return false
		}
	}
	return true
}

// issueWrite is the body of issues/create and issues/update.
type issueWrite struct {
	Title       json.RawMessage   `json:"title"`
	Body        *string           `json:"body"`
	State       *string           `json:"state"`
	StateReason *string           `json:"state_reason"`
	Labels      []json.RawMessage `json:"labels"`
	hasLabels   bool
}

func decodeIssueWrite(body []byte) (issueWrite, error) {
	var w issueWrite
	if len(body) == 0 {
		return w, nil
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return w, err
	}
	var raw map[string]json.RawMessage
	json.Unmarshal(body, &raw)
	_, w.hasLabels = raw["labels"]
	return w, nil
}

// title is the title as a string: GitHub takes a string or a number.
func (w issueWrite) title() (string, bool) {
	if len(w.Title) == 0 || string(w.Title) == "null" {
		return "", false
	}
	var t string
	if json.Unmarshal(w.Title, &t) == nil {
		return t, true
	}
	return string(w.Title), true
}

func (s *Server) labelsFrom(r *repo, raw []json.RawMessage) []*label {
	var out []*label
	for _, l := range raw {
		var name string
		if json.Unmarshal(l, &name) != nil {
			var obj struct {
				Name string `json:"name"`
			}
			json.Unmarshal(l, &obj)
			name = obj.Name
		}
		if name = strings.TrimSpace(name); name != "" {
			lb := s.labelLocked(r, name)
			if !slices.Contains(out, lb) {
				out = append(out, lb)
			}
		}
	}
	return out
}

func createIssue(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	w, err := decodeIssueWrite(c.body)
	if err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	title, _ := w.title()
	if strings.TrimSpace(title) == "" {
		c.invalid = "an issue needs a title that is not blank"
		return validationFailed("Validation Failed", "Issue", "title", "missing_field")
	}
	if w.Body != nil && utf8.RuneCountInString(*w.Body) > maxCommentBody {
		c.invalid = fmt.Sprintf("issue body of %d characters; GitHub's limit is %d", utf8.RuneCountInString(*w.Body), maxCommentBody)
		return validationFailed("Validation Failed", "Issue", "body", "custom")
	}
	r.nextNumber++
	is := &issue{id: s.st.id(), number: r.nextNumber, title: title, body: w.Body, user: c.who.user, state: "open",
		created: c.now, updated: c.now, labels: s.labelsFrom(r, w.Labels), app: c.who.app}
	r.issues[is.number] = is
	return reply{status: http.StatusCreated, body: s.issueJSON(r, is)}
}

func getIssue(s *Server, c *call) reply {
	r, is, ok := s.findIssue(c)
	if !ok {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.issueJSON(r, is)}
}

func updateIssue(s *Server, c *call) reply {
	r, is, ok := s.findIssue(c)
	if !ok {
		return notFound()
	}
	if !canWrite(r, c.who) && c.who.user != is.user {
		return errReply(http.StatusForbidden, "Must have admin rights to Repository.")
	}
	w, err := decodeIssueWrite(c.body)
	if err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	if t, ok := w.title(); ok {
		if strings.TrimSpace(t) == "" {
			c.invalid = "an issue's title cannot be blank"
			return validationFailed("Validation Failed", "Issue", "title", "missing_field")
		}
		is.title = t
	}
	if w.Body != nil {
		if utf8.RuneCountInString(*w.Body) > maxCommentBody {
			c.invalid = fmt.Sprintf("issue body of %d characters; GitHub's limit is %d", utf8.RuneCountInString(*w.Body), maxCommentBody)
			return validationFailed("Validation Failed", "Issue", "body", "custom")
		}
		b := *w.Body
		is.body = &b
	}
	if w.hasLabels {
		is.labels = s.labelsFrom(r, w.Labels)
	}
	if w.State != nil && *w.State != is.state {
		is.state = *w.State
		if is.state == "closed" {
			is.closed, is.closedBy = c.now, c.who.user
			is.stateReason = "completed"
		} else {
			is.closed, is.closedBy = time.Time{}, nil
			is.stateReason = "reopened"
		}
	}
	if w.StateReason != nil {
		is.stateReason = *w.StateReason
	}
	is.updated = c.now
	return reply{status: http.StatusOK, body: s.issueJSON(r, is)}
}

func listComments(s *Server, c *call) reply {
	r, is, ok := s.findIssue(c)
	if !ok {
		return notFound()
	}
	var since time.Time
	if v := c.query.Get("since"); v != "" {
		since, _ = time.Parse(time.RFC3339, v)
	}
	all := []any{}
	for _, cm := range r.sortedComments(is.number) {
		if !since.IsZero() && cm.updated.Before(since) {
			continue
		}
		all = append(all, s.commentJSON(r, cm))
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

type commentWrite struct {
	Body string `json:"body"`
}

// checkCommentBody refuses, as GitHub does, a blank body or one past the
// limit; the refusal is a violation.
func checkCommentBody(c *call, body string) (reply, bool) {
	if strings.TrimSpace(body) == "" {
		c.invalid = "a comment body cannot be blank"
		return validationFailed("Validation Failed", "IssueComment", "body", "missing_field"), false
	}
	if n := utf8.RuneCountInString(body); n > maxCommentBody {
		c.invalid = fmt.Sprintf("comment body of %d characters; GitHub's limit is %d (fold or split it)", n, maxCommentBody)
		return validationFailed("Validation Failed", "IssueComment", "body", "custom"), false
	}
	return reply{}, true
}

func createComment(s *Server, c *call) reply {
	r, is, ok := s.findIssue(c)
	if !ok {
		return notFound()
	}
	var w commentWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	if bad, ok := checkCommentBody(c, w.Body); !ok {
		return bad
	}
	cm := &comment{id: s.st.id(), number: is.number, body: w.Body, user: c.who.user, app: c.who.app, created: c.now, updated: c.now}
	r.comments[cm.id] = cm
	is.updated = c.now
	return reply{status: http.StatusCreated, body: s.commentJSON(r, cm)}
}

func (s *Server) findComment(c *call) (*repo, *comment, bool) {
	r, ok := s.findRepo(c)
	if !ok {
		return nil, nil, false
	}
	id, _ := strconv.ParseInt(c.params["comment_id"], 10, 64)
	cm, ok := r.comments[id]
	return r, cm, ok
}

// changeableComment is the comment the call names, when its caller wrote
// it or may write to the repository; else the reply that refuses the call.
func (s *Server) changeableComment(c *call) (*repo, *comment, reply, bool) {
	r, cm, ok := s.findComment(c)
	if !ok {
		return nil, nil, notFound(), false
	}
	if cm.user != c.who.user && !canWrite(r, c.who) {
		return nil, nil, errReply(http.StatusForbidden, "Resource not accessible by personal access token"), false
	}
	return r, cm, reply{}, true
}

func updateComment(s *Server, c *call) reply {
	r, cm, bad, ok := s.changeableComment(c)
	if !ok {
		return bad
	}
	var w commentWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	if bad, ok := checkCommentBody(c, w.Body); !ok {
		return bad
	}
	cm.body, cm.updated = w.Body, c.now
	return reply{status: http.StatusOK, body: s.commentJSON(r, cm)}
}

func deleteComment(s *Server, c *call) reply {
	r, cm, bad, ok := s.changeableComment(c)
	if !ok {
		return bad
	}
	delete(r.comments, cm.id)
	r.deleted[cm.id] = cm
	return reply{status: http.StatusNoContent}
}

func createReaction(s *Server, c *call) reply {
	_, cm, ok := s.findComment(c)
	if !ok {
		return notFound()
	}
	var w struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	for _, re := range cm.reactions {
		if re.user == c.who.user && re.content == w.Content {
			return reply{status: http.StatusOK, body: s.reactionJSON(re)}
		}
	}
	re := &reaction{id: s.st.id(), content: w.Content, user: c.who.user, created: c.now}
	cm.reactions = append(cm.reactions, re)
	return reply{status: http.StatusCreated, body: s.reactionJSON(re)}
}
