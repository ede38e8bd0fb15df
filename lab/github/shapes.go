package labgithub

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file renders the server's state in GitHub's JSON shapes: every
// field the description requires, with the lab's URLs.

func (s *Server) api(path string) string { return s.web + "/api/v3/" + path }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func tsOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

func strOrNil(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func nodeID(kind string, id int64) string {
	return base64.RawStdEncoding.EncodeToString([]byte(kind + ":" + strconv.FormatInt(id, 10)))
}

func (s *Server) userJSON(u *user) map[string]any {
	if u == nil {
		return nil
	}
	login := url.PathEscape(u.login)
	api := s.api("users/" + login)
	html := s.web + "/" + login
	if u.kind == "Bot" {
		html = s.web + "/apps/" + url.PathEscape(strings.TrimSuffix(u.login, "[bot]"))
	}
	return map[string]any{
		"login":               u.login,
		"id":                  u.id,
		"node_id":             nodeID(u.kind, u.id),
		"avatar_url":          s.web + "/avatars/u/" + strconv.FormatInt(u.id, 10),
		"gravatar_id":         "",
		"url":                 api,
		"html_url":            html,
		"followers_url":       api + "/followers",
		"following_url":       api + "/following{/other_user}",
		"gists_url":           api + "/gists{/gist_id}",
		"starred_url":         api + "/starred{/owner}{/repo}",
		"subscriptions_url":   api + "/subscriptions",
		"organizations_url":   api + "/orgs",
		"repos_url":           api + "/repos",
		"events_url":          api + "/events{/privacy}",
		"received_events_url": api + "/received_events",
		"type":                u.kind,
		"site_admin":          false,
		"user_view_type":      "public",
	}
}

func (s *Server) ownerOf(a *app) *user {
	u := s.userLocked(a.ownerLogin)
	u.kind = "Organization"
	return u
}

// appJSON is the "GitHub app" (integration) shape.
func (s *Server) appJSON(a *app) any {
	if a == nil {
		return nil
	}
	return map[string]any{
		"id":           a.id,
		"slug":         a.slug,
		"node_id":      nodeID("App", a.id),
		"client_id":    a.clientID,
		"owner":        s.userJSON(s.ownerOf(a)),
		"name":         a.name,
		"description":  "",
		"external_url": s.web + "/apps/" + a.slug,
		"html_url":     s.web + "/apps/" + a.slug,
		"created_at":   ts(a.created),
		"updated_at":   ts(a.created),
		"permissions":  a.permissions(),
		"events":       a.events(),
	}
}

// repoJSON is the "repository" shape.
func (s *Server) repoJSON(r *repo) map[string]any {
	full := r.owner.login + "/" + r.name
	api := s.api("repos/" + full)
	html := s.web + "/" + full
	visibility := "public"
	if r.private {
		visibility = "private"
	}
	pushed := r.pushed
	if pushed.IsZero() {
		pushed = r.created
	}
	open := 0
	for _, is := range r.issues {
		if is.state == "open" {
			open++
		}
	}
	m := map[string]any{
		"id":                 r.id,
		"node_id":            nodeID("Repository", r.id),
		"name":               r.name,
		"full_name":          full,
		"owner":              s.userJSON(r.owner),
		"private":            r.private,
		"visibility":         visibility,
		"html_url":           html,
		"description":        nil,
		"fork":               r.parent != nil,
		"url":                api,
		"archive_url":        api + "/{archive_format}{/ref}",
		"assignees_url":      api + "/assignees{/user}",
		"blobs_url":          api + "/git/blobs{/sha}",
		"branches_url":       api + "/branches{/branch}",
		"collaborators_url":  api + "/collaborators{/collaborator}",
		"comments_url":       api + "/comments{/number}",
		"commits_url":        api + "/commits{/sha}",
		"compare_url":        api + "/compare/{base}...{head}",
		"contents_url":       api + "/contents/{+path}",
		"contributors_url":   api + "/contributors",
		"deployments_url":    api + "/deployments",
		"downloads_url":      api + "/downloads",
		"events_url":         api + "/events",
		"forks_url":          api + "/forks",
		"git_commits_url":    api + "/git/commits{/sha}",
		"git_refs_url":       api + "/git/refs{/sha}",
		"git_tags_url":       api + "/git/tags{/sha}",
		"git_url":            "git://" + strings.TrimPrefix(s.web, "http://") + "/" + full + ".git",
		"hooks_url":          api + "/hooks",
		"issue_comment_url":  api + "/issues/comments{/number}",
		"issue_events_url":   api + "/issues/events{/number}",
		"issues_url":         api + "/issues{/number}",
		"keys_url":           api + "/keys{/key_id}",
		"labels_url":         api + "/labels{/name}",
		"languages_url":      api + "/languages",
		"merges_url":         api + "/merges",
		"milestones_url":     api + "/milestones{/number}",
		"notifications_url":  api + "/notifications{?since,all,participating}",
		"pulls_url":          api + "/pulls{/number}",
		"releases_url":       api + "/releases{/id}",
		"ssh_url":            "git@" + strings.TrimPrefix(s.web, "http://") + ":" + full + ".git",
		"stargazers_url":     api + "/stargazers",
		"statuses_url":       api + "/statuses/{sha}",
		"subscribers_url":    api + "/subscribers",
		"subscription_url":   api + "/subscription",
		"tags_url":           api + "/tags",
		"teams_url":          api + "/teams",
		"trees_url":          api + "/git/trees{/sha}",
		"clone_url":          s.web + "/" + full + ".git",
		"mirror_url":         nil,
		"svn_url":            html,
		"homepage":           nil,
		"language":           nil,
		"forks_count":        0,
		"forks":              0,
		"stargazers_count":   0,
		"watchers_count":     0,
		"watchers":           0,
		"size":               0,
		"default_branch":     r.defaultBranch,
		"open_issues_count":  open,
		"open_issues":        open,
		"is_template":        false,
		"topics":             []string{},
		"has_issues":         true,
		"has_projects":       false,
		"has_wiki":           false,
		"has_pages":          false,
		"has_downloads":      true,
		"has_discussions":    false,
		"archived":           false,
		"disabled":           false,
		"allow_forking":      true,
		"license":            nil,
		"pushed_at":          ts(pushed),
		"created_at":         ts(r.created),
		"updated_at":         ts(pushed),
		"allow_merge_commit": true,
		"allow_squash_merge": true,
		"allow_rebase_merge": true,
	}
	return m
}

// fullRepoJSON is the "full-repository" shape, with who's permissions.
func (s *Server) fullRepoJSON(r *repo, who *token) map[string]any {
	m := s.repoJSON(r)
	m["network_count"] = 0
	m["subscribers_count"] = 0
	if who != nil {
		p := r.permission(who.user.login)
		if who.app != nil {
			p = "write"
		}
		rank := permissionRank(p)
		m["permissions"] = map[string]any{
			"admin": rank >= permissionRank("admin"), "maintain": rank >= permissionRank("maintain"),
			"push": rank >= permissionRank("write"), "triage": rank >= permissionRank("triage"), "pull": rank >= permissionRank("read"),
		}
	}
	if r.parent != nil {
		m["parent"] = s.repoJSON(r.parent)
		m["source"] = s.repoJSON(r.parent)
	}
	return m
}

func authorAssociation(r *repo, u *user) string {
	switch {
	case strings.EqualFold(u.login, r.owner.login):
		return "OWNER"
	case r.collaborators[strings.ToLower(u.login)] != "":
		return "COLLABORATOR"
	}
	return "NONE"
}

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

func (s *Server) checkRunJSON(r *repo, c *checkRun) map[string]any {
	id := strconv.FormatInt(c.id, 10)
	return map[string]any{
		"id":           c.id,
		"node_id":      nodeID("CheckRun", c.id),
		"head_sha":     c.headSHA,
		"external_id":  c.externalID,
		"url":          s.api("repos/" + r.fullName() + "/check-runs/" + id),
		"html_url":     s.web + "/" + r.fullName() + "/runs/" + id,
		"details_url":  nonEmptyOr(c.detailsURL, s.web+"/"+r.fullName()+"/runs/"+id),
		"status":       c.status,
		"conclusion":   nonEmptyOrNil(c.conclusion),
		"started_at":   tsOrNil(c.started),
		"completed_at": tsOrNil(c.completed),
		"output": map[string]any{
			"title":             strOrNil(c.title),
			"summary":           strOrNil(c.summary),
			"text":              strOrNil(c.text),
			"annotations_count": len(c.annotations),
			"annotations_url":   s.api("repos/" + r.fullName() + "/check-runs/" + id + "/annotations"),
		},
		"name":          c.name,
		"check_suite":   map[string]any{"id": c.suiteID},
		"app":           s.appJSON(c.app),
		"pull_requests": s.minimalPRs(r, c.headSHA),
	}
}

func nonEmptyOr(v, or string) string {
	if v == "" {
		return or
	}
	return v
}

func nonEmptyOrNil(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// minimalPRs are the open pull requests of r whose head is sha, as a
// check run lists them (fork pull requests are left out, as on GitHub).
func (s *Server) minimalPRs(r *repo, sha string) []any {
	out := []any{}
	for _, is := range r.sortedIssues() {
		if is.pr == nil || is.state != "open" || is.pr.headRepo != r {
			continue
		}
		head, base := s.prSHAs(r, is)
		if head != sha {
			continue
		}
		out = append(out, map[string]any{
			"id":     is.id,
			"number": is.number,
			"url":    s.api("repos/" + r.fullName() + "/pulls/" + strconv.Itoa(is.number)),
			"head":   map[string]any{"ref": is.pr.headRef, "sha": head, "repo": s.minimalRepo(is.pr.headRepo)},
			"base":   map[string]any{"ref": is.pr.baseRef, "sha": base, "repo": s.minimalRepo(r)},
		})
	}
	return out
}

func (s *Server) minimalRepo(r *repo) map[string]any {
	return map[string]any{"id": r.id, "url": s.api("repos/" + r.fullName()), "name": r.name}
}

func (s *Server) deploymentJSON(r *repo, d *deployment) map[string]any {
	api := s.api("repos/" + r.fullName() + "/deployments/" + strconv.FormatInt(d.id, 10))
	var payload any = map[string]any{}
	if len(d.payload) > 0 {
		payload = d.payload
	}
	m := map[string]any{
		"url":                    api,
		"id":                     d.id,
		"node_id":                nodeID("Deployment", d.id),
		"sha":                    d.sha,
		"ref":                    d.ref,
		"task":                   d.task,
		"payload":                payload,
		"original_environment":   d.environment,
		"environment":            d.environment,
		"description":            strOrNil(d.description),
		"creator":                s.userJSON(d.creator),
		"created_at":             ts(d.created),
		"updated_at":             ts(d.updated),
		"statuses_url":           api + "/statuses",
		"repository_url":         s.api("repos/" + r.fullName()),
		"transient_environment":  d.transient,
		"production_environment": d.production,
	}
	if d.app != nil {
		m["performed_via_github_app"] = s.appJSON(d.app)
	}
	return m
}

func (s *Server) deploymentStatusJSON(r *repo, d *deployment, st *deploymentStatus) map[string]any {
	dep := s.api("repos/" + r.fullName() + "/deployments/" + strconv.FormatInt(d.id, 10))
	m := map[string]any{
		"url":             dep + "/statuses/" + strconv.FormatInt(st.id, 10),
		"id":              st.id,
		"node_id":         nodeID("DeploymentStatus", st.id),
		"state":           st.state,
		"creator":         s.userJSON(st.creator),
		"description":     st.description,
		"environment":     st.environment,
		"target_url":      st.targetURL,
		"log_url":         st.logURL,
		"environment_url": st.environmentURL,
		"created_at":      ts(st.created),
		"updated_at":      ts(st.created),
		"deployment_url":  dep,
		"repository_url":  s.api("repos/" + r.fullName()),
	}
	if st.app != nil {
		m["performed_via_github_app"] = s.appJSON(st.app)
	}
	return m
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
