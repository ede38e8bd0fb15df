package github

import (
	"net/http"
	"net/url"
	"strconv"
)

func (s *Server) findPull(c *call) (*repo, *issue, bool) {
	r, ok := s.findRepo(c)
	if !ok {
		return nil, nil, false
	}
	n, _ := strconv.Atoi(c.params["pull_number"])
	is, ok := r.issues[n]
	if !ok || is.pr == nil {
		return nil, nil, false
	}
	return r, is, true
}

func getPull(s *Server, c *call) reply {
	r, is, ok := s.findPull(c)
	if !ok {
		return notFound()
	}
	return reply{status: http.StatusOK, body: s.pullJSON(r, is, true)}
}

func listReviews(s *Server, c *call) reply {
	r, is, ok := s.findPull(c)
	if !ok {
		return notFound()
	}
	all := []any{}
	for _, rv := range is.pr.reviews {
		all = append(all, s.reviewJSON(r, is, rv))
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

func listPullFiles(s *Server, c *call) reply {
	r, is, ok := s.findPull(c)
	if !ok {
		return notFound()
	}
	head, base := s.prSHAs(r, is)
	all := []any{}
	for _, f := range s.diffFiles(r, base, head) {
		escaped := (&url.URL{Path: f.path}).EscapedPath()
		var sha any
		if f.status != "removed" {
			if e, ok := s.entryAt(r.dir, head, f.path); ok {
				sha = e.sha
			}
		}
		m := map[string]any{
			"sha":          sha,
			"filename":     f.path,
			"status":       f.status,
			"additions":    f.additions,
			"deletions":    f.deletions,
			"changes":      f.additions + f.deletions,
			"blob_url":     s.web + "/" + r.fullName() + "/blob/" + head + "/" + escaped,
			"raw_url":      s.web + "/raw/" + r.fullName() + "/" + head + "/" + escaped,
			"contents_url": s.api("repos/" + r.fullName() + "/contents/" + escaped + "?ref=" + head),
		}
		if f.previous != "" {
			m["previous_filename"] = f.previous
		}
		all = append(all, m)
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

// listCommitPulls answers which pull requests a commit belongs to: the
// merged ones it is the merge commit or head of, or else the open ones
// that contain it.
func listCommitPulls(s *Server, c *call) reply {
	r, sha, bad, ok := s.findCommit(c, "commit_sha")
	if !ok {
		return bad
	}
	all := []any{}
	for _, is := range r.sortedIssues() {
		if is.pr != nil && is.pr.merged && (is.pr.mergeSHA == sha || is.pr.headSHA == sha) {
			all = append(all, s.pullJSON(r, is, false))
		}
	}
	if len(all) == 0 {
		for _, is := range r.sortedIssues() {
			p := is.pr
			if p == nil || is.state != "open" {
				continue
			}
			if s.isAncestor(r.dir, sha, p.headSHA) && !s.isAncestor(r.dir, sha, p.baseSHA) {
				all = append(all, s.pullJSON(r, is, false))
			}
		}
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}
