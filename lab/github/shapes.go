package github

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// shapes*.go render the server's state in GitHub's JSON shapes: every
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

func (s *Server) minimalRepo(r *repo) map[string]any {
	return map[string]any{"id": r.id, "url": s.api("repos/" + r.fullName()), "name": r.name}
}
