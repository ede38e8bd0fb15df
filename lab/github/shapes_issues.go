package github

import (
	"net/url"
	"strconv"
)

// GitHub's JSON shapes of issues, pull requests (an issue, to GitHub), their
// labels, comments, reactions and reviews (see shapes.go).

func (s *Server) labelJSON(r *repo, l *label) map[string]any {
	return map[string]any{
		"id":          l.id,
		"node_id":     nodeID("Label", l.id),
		"url":         s.api("repos/" + r.fullName() + "/labels/" + url.PathEscape(l.name)),
		"name":        l.name,
		"description": nil,
		"color":       l.color,
		"default":     false,
	}
}

func (s *Server) labelsJSON(r *repo, is *issue) []any {
	out := []any{}
	for _, l := range is.labels {
		out = append(out, s.labelJSON(r, l))
	}
	return out
}

func (r *repo) commentCount(number int) int {
	n := 0
	for _, c := range r.comments {
		if c.number == number {
			n++
		}
	}
	return n
}

// issueJSON is the "issue" shape; a pull request carries pull_request.
func (s *Server) issueJSON(r *repo, is *issue) map[string]any {
	api := s.api("repos/" + r.fullName() + "/issues/" + strconv.Itoa(is.number))
	html := s.web + "/" + r.fullName() + "/issues/" + strconv.Itoa(is.number)
	m := map[string]any{
		"id":                 is.id,
		"node_id":            nodeID("Issue", is.id),
		"url":                api,
		"repository_url":     s.api("repos/" + r.fullName()),
		"labels_url":         api + "/labels{/name}",
		"comments_url":       api + "/comments",
		"events_url":         api + "/events",
		"html_url":           html,
		"timeline_url":       api + "/timeline",
		"number":             is.number,
		"state":              is.state,
		"state_reason":       nil,
		"title":              is.title,
		"body":               strOrNil(is.body),
		"user":               s.userJSON(is.user),
		"labels":             s.labelsJSON(r, is),
		"assignee":           nil,
		"assignees":          []any{},
		"milestone":          nil,
		"locked":             false,
		"active_lock_reason": nil,
		"comments":           r.commentCount(is.number),
		"closed_at":          tsOrNil(is.closed),
		"created_at":         ts(is.created),
		"updated_at":         ts(is.updated),
		"closed_by":          s.userJSON(is.closedBy),
		"author_association": authorAssociation(r, is.user),
	}
	if is.stateReason != "" {
		m["state_reason"] = is.stateReason
	}
	if is.app != nil {
		m["performed_via_github_app"] = s.appJSON(is.app)
	}
	if is.pr != nil {
		pr := s.api("repos/" + r.fullName() + "/pulls/" + strconv.Itoa(is.number))
		phtml := s.web + "/" + r.fullName() + "/pull/" + strconv.Itoa(is.number)
		m["html_url"] = phtml
		m["draft"] = is.pr.draft
		m["pull_request"] = map[string]any{
			"url":       pr,
			"html_url":  phtml,
			"diff_url":  phtml + ".diff",
			"patch_url": phtml + ".patch",
			"merged_at": tsOrNil(is.pr.mergedAt),
		}
	}
	return m
}

func (s *Server) commentJSON(r *repo, c *comment) map[string]any {
	issueHTML := s.web + "/" + r.fullName() + "/issues/" + strconv.Itoa(c.number)
	if is := r.issues[c.number]; is != nil && is.pr != nil {
		issueHTML = s.web + "/" + r.fullName() + "/pull/" + strconv.Itoa(c.number)
	}
	m := map[string]any{
		"id":                 c.id,
		"node_id":            nodeID("IssueComment", c.id),
		"url":                s.api("repos/" + r.fullName() + "/issues/comments/" + strconv.FormatInt(c.id, 10)),
		"html_url":           issueHTML + "#issuecomment-" + strconv.FormatInt(c.id, 10),
		"issue_url":          s.api("repos/" + r.fullName() + "/issues/" + strconv.Itoa(c.number)),
		"body":               c.body,
		"user":               s.userJSON(c.user),
		"created_at":         ts(c.created),
		"updated_at":         ts(c.updated),
		"author_association": authorAssociation(r, c.user),
		"reactions":          s.reactionsRollup(r, c),
	}
	if c.app != nil {
		m["performed_via_github_app"] = s.appJSON(c.app)
	}
	return m
}

func (s *Server) reactionsRollup(r *repo, c *comment) map[string]any {
	m := map[string]any{
		"url":         s.api("repos/" + r.fullName() + "/issues/comments/" + strconv.FormatInt(c.id, 10) + "/reactions"),
		"total_count": len(c.reactions),
	}
	for _, k := range reactionContents {
		m[k] = 0
	}
	for _, re := range c.reactions {
		m[re.content] = m[re.content].(int) + 1
	}
	return m
}

var reactionContents = [...]string{"+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"}

func (s *Server) reactionJSON(re *reaction) map[string]any {
	return map[string]any{
		"id":         re.id,
		"node_id":    nodeID("Reaction", re.id),
		"user":       s.userJSON(re.user),
		"content":    re.content,
		"created_at": ts(re.created),
	}
}

func (s *Server) reviewJSON(r *repo, is *issue, rv *review) map[string]any {
	html := s.web + "/" + r.fullName() + "/pull/" + strconv.Itoa(is.number) + "#pullrequestreview-" + strconv.FormatInt(rv.id, 10)
	pr := s.api("repos/" + r.fullName() + "/pulls/" + strconv.Itoa(is.number))
	return map[string]any{
		"id":                 rv.id,
		"node_id":            nodeID("PullRequestReview", rv.id),
		"user":               s.userJSON(rv.user),
		"body":               rv.body,
		"state":              rv.state,
		"html_url":           html,
		"pull_request_url":   pr,
		"_links":             map[string]any{"html": map[string]any{"href": html}, "pull_request": map[string]any{"href": pr}},
		"submitted_at":       ts(rv.at),
		"commit_id":          rv.commitID,
		"author_association": authorAssociation(r, rv.user),
	}
}

// pullJSON is the "pull-request" shape (full) or "pull-request-simple".
func (s *Server) pullJSON(r *repo, is *issue, full bool) map[string]any {
	n := strconv.Itoa(is.number)
	api := s.api("repos/" + r.fullName() + "/pulls/" + n)
	issueAPI := s.api("repos/" + r.fullName() + "/issues/" + n)
	html := s.web + "/" + r.fullName() + "/pull/" + n
	head, base := s.prSHAs(r, is)
	p := is.pr
	link := func(h string) map[string]any { return map[string]any{"href": h} }
	statuses := s.api("repos/" + r.fullName() + "/statuses/" + head)
	m := map[string]any{
		"url":                 api,
		"id":                  is.id,
		"node_id":             nodeID("PullRequest", is.id),
		"html_url":            html,
		"diff_url":            html + ".diff",
		"patch_url":           html + ".patch",
		"issue_url":           issueAPI,
		"commits_url":         api + "/commits",
		"review_comments_url": api + "/comments",
		"review_comment_url":  s.api("repos/" + r.fullName() + "/pulls/comments{/number}"),
		"comments_url":        issueAPI + "/comments",
		"statuses_url":        statuses,
		"number":              is.number,
		"state":               is.state,
		"locked":              false,
		"title":               is.title,
		"user":                s.userJSON(is.user),
		"body":                strOrNil(is.body),
		"labels":              s.labelsJSON(r, is),
		"milestone":           nil,
		"active_lock_reason":  nil,
		"created_at":          ts(is.created),
		"updated_at":          ts(is.updated),
		"closed_at":           tsOrNil(is.closed),
		"merged_at":           tsOrNil(p.mergedAt),
		"merge_commit_sha":    nonEmptyOrNil(p.mergeSHA),
		"assignee":            nil,
		"assignees":           []any{},
		"requested_reviewers": []any{},
		"requested_teams":     []any{},
		"head": map[string]any{
			"label": p.headRepo.owner.login + ":" + p.headRef,
			"ref":   p.headRef,
			"sha":   head,
			"user":  s.userJSON(p.headRepo.owner),
			"repo":  s.repoJSON(p.headRepo),
		},
		"base": map[string]any{
			"label": r.owner.login + ":" + p.baseRef,
			"ref":   p.baseRef,
			"sha":   base,
			"user":  s.userJSON(r.owner),
			"repo":  s.repoJSON(r),
		},
		"_links": map[string]any{
			"self":            link(api),
			"html":            link(html),
			"issue":           link(issueAPI),
			"comments":        link(issueAPI + "/comments"),
			"review_comments": link(api + "/comments"),
			"review_comment":  link(s.api("repos/" + r.fullName() + "/pulls/comments{/number}")),
			"commits":         link(api + "/commits"),
			"statuses":        link(statuses),
		},
		"author_association": authorAssociation(r, is.user),
		"auto_merge":         nil,
		"draft":              p.draft,
	}
	if !full {
		return m
	}
	mergeable := s.prMergeable(r, is)
	state := "unknown"
	switch {
	case p.merged || is.state == "closed":
		state = "unknown"
	case p.draft:
		state = "draft"
	case mergeable != nil && !*mergeable:
		state = "dirty"
	case p.blocked:
		state = "blocked"
	case mergeable != nil:
		state = "clean"
	}
	stats := s.prStats(r, is)
	m["merged"] = p.merged
	m["mergeable"] = mergeable
	m["rebaseable"] = mergeable
	m["mergeable_state"] = state
	m["merged_by"] = s.userJSON(p.mergedBy)
	m["comments"] = r.commentCount(is.number)
	m["review_comments"] = 0
	m["maintainer_can_modify"] = false
	m["commits"] = stats.commits
	m["additions"] = stats.additions
	m["deletions"] = stats.deletions
	m["changed_files"] = stats.files
	return m
}
