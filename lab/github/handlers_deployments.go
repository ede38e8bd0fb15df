package github

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

type deploymentWrite struct {
	Ref                   string          `json:"ref"`
	Task                  *string         `json:"task"`
	AutoMerge             *bool           `json:"auto_merge"`
	RequiredContexts      *[]string       `json:"required_contexts"`
	Payload               json.RawMessage `json:"payload"`
	Environment           *string         `json:"environment"`
	Description           *string         `json:"description"`
	TransientEnvironment  *bool           `json:"transient_environment"`
	ProductionEnvironment *bool           `json:"production_environment"`
}

// passing is whether a check run counts as passed for a deployment's
// required contexts.
func passing(run *checkRun) bool {
	return run.status == "completed" && (run.conclusion == "success" || run.conclusion == "neutral" || run.conclusion == "skipped")
}

func createDeployment(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	if !canWrite(r, c.who) {
		return errReply(http.StatusForbidden, "Resource not accessible by personal access token")
	}
	var w deploymentWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	sha := s.resolveRef(r, w.Ref)
	if sha == "" {
		return validationFailed("No ref found for: "+w.Ref, "Deployment", "ref", "invalid")
	}
	// auto_merge (on unless turned off) merges the default branch into an
	// older ref first; the lab does not, and says so.
	if w.AutoMerge == nil || *w.AutoMerge {
		if def := s.resolve(r.dir, "refs/heads/"+r.defaultBranch); def != "" && !s.isAncestor(r.dir, def, sha) {
			return reply{status: http.StatusConflict, body: map[string]any{
				"message":           "Conflict merging " + r.defaultBranch + " into " + w.Ref + ": the lab does not auto-merge; send auto_merge: false or deploy a ref that contains " + r.defaultBranch + ".",
				"documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
				"status":            "409",
			}}
		}
	}
	// Required contexts (all of the commit's checks unless the request
	// names them) must have passed.
	var failing []any
	latest := map[string]*checkRun{}
	for _, run := range r.sortedCheckRuns() {
		if run.headSHA == sha {
			latest[run.name] = run
		}
	}
	if w.RequiredContexts == nil {
		for name, run := range latest {
			if !passing(run) {
				failing = append(failing, map[string]any{"context": name, "state": checkState(run)})
			}
		}
	} else {
		for _, name := range *w.RequiredContexts {
			run, ok := latest[name]
			if !ok || !passing(run) {
				state := "missing"
				if ok {
					state = checkState(run)
				}
				failing = append(failing, map[string]any{"context": name, "state": state})
			}
		}
	}
	if len(failing) > 0 {
		return reply{status: http.StatusConflict, body: map[string]any{
			"message":           "Conflict: Commit status checks failed for " + w.Ref + ".",
			"errors":            []any{map[string]any{"contexts": failing, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}},
			"documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
			"status":            "409",
		}}
	}
	d := &deployment{id: s.st.id(), sha: sha, ref: w.Ref, task: "deploy", environment: "production", description: w.Description,
		creator: c.who.user, app: c.who.app, created: c.now, updated: c.now}
	if w.Task != nil {
		d.task = *w.Task
	}
	if w.Environment != nil {
		d.environment = *w.Environment
	}
	d.production = d.environment == "production"
	if w.ProductionEnvironment != nil {
		d.production = *w.ProductionEnvironment
	}
	if w.TransientEnvironment != nil {
		d.transient = *w.TransientEnvironment
	}
	if len(w.Payload) > 0 && string(w.Payload) != "null" {
		d.payload = slices.Clone(w.Payload)
	}
	r.deployments = append(r.deployments, d)
	return reply{status: http.StatusCreated, body: s.deploymentJSON(r, d)}
}

func checkState(run *checkRun) string {
	if run.status != "completed" {
		return "pending"
	}
	return run.conclusion
}

func listDeployments(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	q := c.query
	match := func(key, v string) bool {
		want := q.Get(key)
		return want == "" || want == "none" || want == v
	}
	all := []any{}
	for i := len(r.deployments) - 1; i >= 0; i-- {
		d := r.deployments[i]
		if match("sha", d.sha) && match("ref", d.ref) && match("task", d.task) && match("environment", d.environment) {
			all = append(all, s.deploymentJSON(r, d))
		}
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

func (s *Server) findDeployment(c *call) (*repo, *deployment, bool) {
	r, ok := s.findRepo(c)
	if !ok {
		return nil, nil, false
	}
	id, _ := strconv.ParseInt(c.params["deployment_id"], 10, 64)
	for _, d := range r.deployments {
		if d.id == id {
			return r, d, true
		}
	}
	return nil, nil, false
}

func listDeploymentStatuses(s *Server, c *call) reply {
	r, d, ok := s.findDeployment(c)
	if !ok {
		return notFound()
	}
	all := []any{}
	for i := len(d.statuses) - 1; i >= 0; i-- {
		all = append(all, s.deploymentStatusJSON(r, d, d.statuses[i]))
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: page, header: h}
}

type deploymentStatusWrite struct {
	State          string  `json:"state"`
	TargetURL      *string `json:"target_url"`
	LogURL         *string `json:"log_url"`
	Description    *string `json:"description"`
	Environment    *string `json:"environment"`
	EnvironmentURL *string `json:"environment_url"`
	AutoInactive   *bool   `json:"auto_inactive"`
}

func createDeploymentStatus(s *Server, c *call) reply {
	r, d, ok := s.findDeployment(c)
	if !ok {
		return notFound()
	}
	if !canWrite(r, c.who) {
		return errReply(http.StatusForbidden, "Resource not accessible by personal access token")
	}
	var w deploymentStatusWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	if w.Description != nil && len([]rune(*w.Description)) > 140 {
		c.invalid = "a deployment status description is at most 140 characters"
		return validationFailed("Validation Failed", "DeploymentStatus", "description", "custom")
	}
	st := &deploymentStatus{id: s.st.id(), state: w.State, environment: d.environment, creator: c.who.user, app: c.who.app, created: c.now}
	if w.Description != nil {
		st.description = *w.Description
	}
	if w.TargetURL != nil {
		st.targetURL, st.logURL = *w.TargetURL, *w.TargetURL
	}
	if w.LogURL != nil {
		st.logURL, st.targetURL = *w.LogURL, *w.LogURL
	}
	if w.EnvironmentURL != nil {
		st.environmentURL = *w.EnvironmentURL
	}
	if w.Environment != nil && *w.Environment != "" {
		d.environment, st.environment = *w.Environment, *w.Environment
	}
	d.statuses = append(d.statuses, st)
	d.updated = c.now
	// A success makes the environment's earlier, non-transient
	// deployments inactive unless auto_inactive is false.
	if w.State == "success" && (w.AutoInactive == nil || *w.AutoInactive) {
		for _, old := range r.deployments {
			if old == d || old.environment != d.environment || old.transient || len(old.statuses) == 0 {
				continue
			}
			if last := old.statuses[len(old.statuses)-1]; last.state == "success" {
				old.statuses = append(old.statuses, &deploymentStatus{id: s.st.id(), state: "inactive", environment: old.environment,
					description: "superseded by deployment " + strconv.FormatInt(d.id, 10), creator: c.who.user, app: c.who.app, created: c.now})
				old.updated = c.now
			}
		}
	}
	return reply{status: http.StatusCreated, body: s.deploymentStatusJSON(r, d, st)}
}
