package github

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// checkRunWrite is the body of checks/create and checks/update.
type checkRunWrite struct {
	Name        *string    `json:"name"`
	HeadSHA     string     `json:"head_sha"`
	DetailsURL  *string    `json:"details_url"`
	ExternalID  *string    `json:"external_id"`
	Status      *string    `json:"status"`
	Conclusion  *string    `json:"conclusion"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Output      *struct {
		Title       *string      `json:"title"`
		Summary     *string      `json:"summary"`
		Text        *string      `json:"text"`
		Annotations []Annotation `json:"annotations"`
	} `json:"output"`
}

// applyCheckRun applies w to run, refusing what GitHub refuses beyond the
// description.
func applyCheckRun(c *call, run *checkRun, w checkRunWrite) (reply, bool) {
	if w.Conclusion != nil && *w.Conclusion == "stale" {
		c.invalid = "conclusion \"stale\": only GitHub sets it"
		return validationFailed("Invalid request.\n\nOnly GitHub can set a check run's conclusion to stale.", "CheckRun", "conclusion", "invalid"), false
	}
	completing := (w.Status != nil && *w.Status == "completed") || w.CompletedAt != nil
	if completing && w.Conclusion == nil && run.conclusion == "" {
		c.invalid = "a completed check run (status completed or completed_at) needs a conclusion"
		return validationFailed("Invalid request.\n\nconclusion is required when status is completed or completed_at is set.", "CheckRun", "conclusion", "missing_field"), false
	}
	if w.Name != nil {
		if *w.Name == "" {
			c.invalid = "a check run's name cannot be blank (go-github's UpdateCheckRunOptions always sends Name: set it)"
			return validationFailed("Validation Failed", "CheckRun", "name", "missing_field"), false
		}
		run.name = *w.Name
	}
	if w.DetailsURL != nil {
		run.detailsURL = *w.DetailsURL
	}
	if w.ExternalID != nil {
		run.externalID = *w.ExternalID
	}
	if w.Status != nil {
		run.status = *w.Status
	}
	if w.StartedAt != nil {
		run.started = w.StartedAt.UTC()
	}
	if w.Conclusion != nil {
		run.conclusion, run.status = *w.Conclusion, "completed"
	}
	if run.status == "completed" {
		run.completed = c.now
		if w.CompletedAt != nil {
			run.completed = w.CompletedAt.UTC()
		}
	}
	if run.status == "in_progress" && run.started.IsZero() {
		run.started = c.now
	}
	if o := w.Output; o != nil {
		if o.Title != nil {
			run.title = o.Title
		}
		if o.Summary != nil {
			run.summary = o.Summary
		}
		if o.Text != nil {
			run.text = o.Text
		}
		// GitHub appends the annotations of each request (at most 50 a
		// request, which the description enforces).
		run.annotations = append(run.annotations, o.Annotations...)
	}
	return reply{}, true
}

func createCheckRun(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	if c.who.app == nil {
		c.invalid = "check runs can be created only with a GitHub App's installation token"
		return errReply(http.StatusForbidden, "You must authenticate via a GitHub App.")
	}
	var w checkRunWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	sha := s.resolve(r.dir, w.HeadSHA)
	if sha == "" || sha != w.HeadSHA {
		return validationFailed("No commit found for SHA: "+w.HeadSHA, "CheckRun", "head_sha", "invalid")
	}
	run := &checkRun{id: s.st.id(), suiteID: s.st.id(), headSHA: sha, status: "queued", app: c.who.app, started: c.now}
	if bad, ok := applyCheckRun(c, run, w); !ok {
		return bad
	}
	r.checkRuns[run.id] = run
	return reply{status: http.StatusCreated, body: s.checkRunJSON(r, run)}
}

func updateCheckRun(s *Server, c *call) reply {
	r, ok := s.findRepo(c)
	if !ok {
		return notFound()
	}
	id, _ := strconv.ParseInt(c.params["check_run_id"], 10, 64)
	run, ok := r.checkRuns[id]
	if !ok {
		return notFound()
	}
	if c.who.app != run.app {
		c.invalid = "a check run can be updated only by the App that created it"
		return errReply(http.StatusForbidden, "Invalid app_id `"+strconv.FormatInt(run.app.id, 10)+"` - check run can only be modified by the GitHub App that created it.")
	}
	var w checkRunWrite
	if err := json.Unmarshal(c.body, &w); err != nil {
		return errReply(http.StatusBadRequest, "Problems parsing JSON")
	}
	if bad, ok := applyCheckRun(c, run, w); !ok {
		return bad
	}
	return reply{status: http.StatusOK, body: s.checkRunJSON(r, run)}
}

func listCheckRuns(s *Server, c *call) reply {
	r, sha, bad, ok := s.findCommit(c, "ref")
	if !ok {
		return bad
	}
	q := c.query
	latest := map[string]int64{}
	for _, run := range r.checkRuns {
		if run.headSHA == sha && run.id > latest[run.name] {
			latest[run.name] = run.id
		}
	}
	all := []any{}
	for _, run := range r.sortedCheckRuns() {
		if run.headSHA != sha {
			continue
		}
		if q.Get("filter") != "all" && latest[run.name] != run.id {
			continue
		}
		if n := q.Get("check_name"); n != "" && n != run.name {
			continue
		}
		if st := q.Get("status"); st != "" && st != run.status {
			continue
		}
		if a := q.Get("app_id"); a != "" && a != strconv.FormatInt(run.app.id, 10) {
			continue
		}
		all = append(all, s.checkRunJSON(r, run))
	}
	page, h := paginate(c, all)
	return reply{status: http.StatusOK, body: map[string]any{"total_count": len(all), "check_runs": page}, header: h}
}
