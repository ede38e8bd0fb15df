package github

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// handlerFor is the handler of an operation of the subset, by operationId.
func handlerFor(op string) handler {
	switch op {
	case "rate-limit/get":
		return getRateLimit
	case "apps/create-installation-access-token":
		return createInstallationToken
	case "apps/get-repo-installation":
		return getRepoInstallation
	case "apps/get-authenticated":
		return getAuthenticatedApp
	case "users/get-authenticated":
		return getAuthenticatedUser
	case "repos/get":
		return getRepo
	case "repos/get-collaborator-permission-level":
		return getCollaboratorPermission
	case "repos/get-content":
		return getContent
	case "pulls/get":
		return getPull
	case "pulls/list-reviews":
		return listReviews
	case "pulls/list-files":
		return listPullFiles
	case "repos/list-pull-requests-associated-with-commit":
		return listCommitPulls
	case "issues/list-for-repo":
		return listIssues
	case "issues/create":
		return createIssue
	case "issues/get":
		return getIssue
	case "issues/update":
		return updateIssue
	case "issues/list-comments":
		return listComments
	case "issues/create-comment":
		return createComment
	case "issues/update-comment":
		return updateComment
	case "issues/delete-comment":
		return deleteComment
	case "reactions/create-for-issue-comment":
		return createReaction
	case "checks/create":
		return createCheckRun
	case "checks/update":
		return updateCheckRun
	case "checks/list-for-ref":
		return listCheckRuns
	case "repos/list-deployments":
		return listDeployments
	case "repos/create-deployment":
		return createDeployment
	case "repos/list-deployment-statuses":
		return listDeploymentStatuses
	case "repos/create-deployment-status":
		return createDeploymentStatus
	}
	return nil
}

// findRepo is the repository the request's owner and repo name, if who
// may see it.
func (s *Server) findRepo(c *call) (*repo, bool) {
	r, err := s.repoLocked(c.params["owner"], c.params["repo"])
	if err != nil {
		return nil, false
	}
	if r.private && c.who != nil && c.who.app == nil && permissionRank(r.permission(c.who.user.login)) == 0 {
		return nil, false
	}
	return r, true
}

// findCommit is the repository the call names and the commit its path
// parameter param names (a sha or a ref); else the reply that refuses the
// call.
func (s *Server) findCommit(c *call, param string) (*repo, string, reply, bool) {
	r, ok := s.findRepo(c)
	if !ok {
		return nil, "", notFound(), false
	}
	sha := s.resolveRef(r, c.params[param])
	if sha == "" {
		return nil, "", validationFailed("No commit found for SHA: "+c.params[param], "Commit", "sha", "invalid"), false
	}
	return r, sha, reply{}, true
}

// writer is the permission who has for writing to r: installation tokens
// write, people need write access.
func canWrite(r *repo, who *token) bool {
	return who.app != nil || permissionRank(r.permission(who.user.login)) >= permissionRank("write")
}

func getRepo(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.fullRepoJSON(r, c.who)}
}

func getCollaboratorPermission(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	u, ok := s.st.users[strings.ToLower(c.params["username"])]
	if !ok {
		return notFound()
	}
	role := r.permission(u.login)
	perm := role
	switch role {
	case "maintain":
		perm = "write"
	case "triage":
		perm = "read"
	}
	rank := permissionRank(role)
	collab := s.userJSON(u)
	collab["role_name"] = role
	collab["permissions"] = map[string]any{
		"admin": rank >= permissionRank("admin"), "maintain": rank >= permissionRank("maintain"),
		"push": rank >= permissionRank("write"), "triage": rank >= permissionRank("triage"), "pull": rank >= permissionRank("read"),
	}
	return reply{status: http.StatusOK, body: map[string]any{"permission": perm, "role_name": role, "user": collab}}
}

// maxContentSize is the largest file whose content GitHub returns inline.
const maxContentSize = 1 << 20

func getContent(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	ref := c.query.Get("ref")
	if ref == "" {
		ref = r.defaultBranch
	}
	commit := s.resolveRef(r, ref)
	if commit == "" {
		return errReply(http.StatusNotFound, "No commit found for the ref "+ref)
	}
	p := strings.Trim(c.params["path"], "/")
	e, ok := s.entryAt(r.dir, commit, p)
	if !ok {
		return notFound()
	}
	if e.kind == "tree" {
		es, err := s.lsTree(r.dir, commit+":"+p)
		if err != nil {
			return errReply(http.StatusInternalServerError, err.Error())
		}
		list := []any{}
		for _, child := range es {
			list = append(list, s.contentJSON(r, ref, commit, path.Join(p, child.name), child, false))
		}
		return reply{status: http.StatusOK, body: list}
	}
	return reply{status: http.StatusOK, body: s.contentJSON(r, ref, commit, p, e, true)}
}

// contentJSON is a content-file, -symlink or -submodule, or a directory
// entry (full false: no content).
func (s *Server) contentJSON(r *repo, ref, commit, p string, e treeEntry, full bool) map[string]any {
	escaped := (&url.URL{Path: p}).EscapedPath()
	self := s.api("repos/" + r.fullName() + "/contents/" + escaped + "?ref=" + url.QueryEscape(ref))
	kind, gitURL, html := "file", s.api("repos/"+r.fullName()+"/git/blobs/"+e.sha), s.web+"/"+r.fullName()+"/blob/"+url.PathEscape(ref)+"/"+escaped
	var download any = s.web + "/raw/" + r.fullName() + "/" + commit + "/" + escaped
	switch {
	case e.kind == "tree":
		kind, gitURL, html, download = "dir", s.api("repos/"+r.fullName()+"/git/trees/"+e.sha), s.web+"/"+r.fullName()+"/tree/"+url.PathEscape(ref)+"/"+escaped, nil
	case e.kind == "commit":
		kind, download = "submodule", nil
	case e.mode == "120000":
		kind = "symlink"
	}
	m := map[string]any{
		"type":         kind,
		"size":         max(e.size, 0),
		"name":         path.Base(p),
		"path":         p,
		"sha":          e.sha,
		"url":          self,
		"git_url":      gitURL,
		"html_url":     html,
		"download_url": download,
		"_links":       map[string]any{"self": self, "git": gitURL, "html": html},
	}
	if kind == "dir" {
		m["size"] = 0
	}
	if !full {
		return m
	}
	switch kind {
	case "file":
		if e.size > maxContentSize {
			m["content"], m["encoding"] = "", "none"
			return m
		}
		b, err := s.catBlob(r.dir, e.sha)
		if err != nil {
			s.logf("github: %s: read %s: %v", r.fullName(), p, err)
		}
		m["content"], m["encoding"] = wrap60(base64.StdEncoding.EncodeToString(b)), "base64"
	case "symlink":
		b, _ := s.catBlob(r.dir, e.sha)
		m["target"] = string(b)
	case "submodule":
		m["submodule_git_url"] = s.web + "/" + r.fullName() + ".git"
	}
	return m
}

// wrap60 breaks base64 into lines of 60, as GitHub sends file content.
func wrap60(b64 string) string {
	var sb strings.Builder
	for len(b64) > 60 {
		sb.WriteString(b64[:60])
		sb.WriteByte('\n')
		b64 = b64[60:]
	}
	sb.WriteString(b64)
	if sb.Len() > 0 {
		sb.WriteByte('\n')
	}
	return sb.String()
}
