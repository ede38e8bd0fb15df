package github

import (
	"strconv"
)

// GitHub's JSON shapes of check runs and deployments (see shapes.go).

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
