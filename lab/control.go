package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	labgithub "github.com/ducksnest/nestbot/lab/github"
)

// The lab's controls are what a person does on its GitHub, from a shell
// (nestlab pr …) or the demo: open, comment on, approve and merge pull
// requests. Each is told to nestbot's webhook as GitHub would tell it.

// PROpen opens a pull request from a new branch with some files changed.
type PROpen struct {
	Branch string            `json:"branch"`
	Title  string            `json:"title,omitempty"`
	User   string            `json:"user,omitempty"`
	Files  map[string]string `json:"files"`  // written on the branch
	Remove []string          `json:"remove"` // deleted on the branch
}

// PRAction is a comment, an approval or a merge.
type PRAction struct {
	Number int    `json:"number"`
	User   string `json:"user,omitempty"`
	Body   string `json:"body,omitempty"`
}

// PRView is a pull request as a person sees it on GitHub.
type PRView struct {
	PR          labgithub.PullRequest  `json:"pull_request"`
	Comments    []labgithub.Comment    `json:"comments"`
	Checks      []labgithub.CheckRun   `json:"check_runs"`
	Deployments []labgithub.Deployment `json:"deployments"`
	Delivery    *labgithub.Delivery    `json:"delivery,omitempty"` // what the webhook answered to this action
}

// OpenPRFrom commits o's files on a new branch, opens a pull request and
// tells the webhook.
func (g *GitHub) OpenPRFrom(ctx context.Context, o PROpen) (PRView, error) {
	files := map[string][]byte{}
	for p, c := range o.Files {
		files[p] = []byte(c)
	}
	if _, err := g.Commit(ctx, g.Owner, g.Repo, labgithub.Commit{Branch: o.Branch, Message: cmp.Or(o.Title, "change "+o.Branch), Author: o.User, Files: files, Remove: o.Remove}); err != nil {
		return PRView{}, err
	}
	pr, err := g.Server.OpenPR(g.Owner, g.Repo, o.Branch, labgithub.PROptions{Title: o.Title, User: o.User})
	if err != nil {
		return PRView{}, err
	}
	return g.tell(ctx, pr.Number, func() (labgithub.Event, error) { return g.PullRequestEvent(g.Owner, g.Repo, pr.Number, "opened") })
}

// CommentOn comments on a pull request and tells the webhook.
func (g *GitHub) CommentOn(ctx context.Context, a PRAction) (PRView, error) {
	user := cmp.Or(a.User, g.Owner)
	g.AddUser(user)
	c, err := g.AddComment(g.Owner, g.Repo, a.Number, user, a.Body)
	if err != nil {
		return PRView{}, err
	}
	return g.tell(ctx, a.Number, func() (labgithub.Event, error) { return g.IssueCommentEvent(g.Owner, g.Repo, c.ID, "created") })
}

// Approve adds an approving review.
func (g *GitHub) Approve(ctx context.Context, a PRAction) (PRView, error) {
	user := cmp.Or(a.User, "reviewer")
	g.AddUser(user)
	if p, _ := g.Permission(g.Owner, g.Repo, user); p == "" || p == "none" || p == "read" {
		g.SetPermission(g.Owner, g.Repo, user, "write")
	}
	if _, err := g.AddReview(g.Owner, g.Repo, a.Number, user, "APPROVED", cmp.Or(a.Body, "Looks good.")); err != nil {
		return PRView{}, err
	}
	return g.View(a.Number)
}

// MergePR merges a pull request and tells the webhook: the pull request
// closed, and the push to the default branch.
func (g *GitHub) MergePR(ctx context.Context, a PRAction) (PRView, error) {
	pushed, err := g.Merge(ctx, g.Owner, g.Repo, a.Number, cmp.Or(a.User, g.Owner))
	if err != nil {
		return PRView{}, err
	}
	if _, err := g.tell(ctx, a.Number, func() (labgithub.Event, error) { return g.PullRequestEvent(g.Owner, g.Repo, a.Number, "closed") }); err != nil {
		return PRView{}, err
	}
	return g.tell(ctx, a.Number, func() (labgithub.Event, error) { return g.PushEvent(pushed) })
}

// View is the pull request and what nestbot did on it.
func (g *GitHub) View(number int) (PRView, error) {
	pr, err := g.PullRequest(g.Owner, g.Repo, number)
	if err != nil {
		return PRView{}, err
	}
	v := PRView{PR: pr}
	v.Comments, _ = g.Comments(g.Owner, g.Repo, number)
	v.Checks, _ = g.CheckRuns(g.Owner, g.Repo, pr.HeadSHA)
	deps, _ := g.Deployments(g.Owner, g.Repo)
	for _, d := range deps {
		if d.SHA == pr.HeadSHA || (pr.MergeCommitSHA != "" && d.SHA == pr.MergeCommitSHA) {
			v.Deployments = append(v.Deployments, d)
		}
	}
	return v, nil
}

// tell builds an event and sends it to the webhook, if there is one.
func (g *GitHub) tell(ctx context.Context, number int, event func() (labgithub.Event, error)) (PRView, error) {
	ev, err := event()
	if err != nil {
		return PRView{}, err
	}
	var d *labgithub.Delivery
	g.mu.Lock()
	has := g.sender != nil
	g.mu.Unlock()
	if has {
		got, err := g.Send(ctx, ev)
		if err != nil {
			return PRView{}, fmt.Errorf("lab: deliver %s to nestbot: %w (is nestbot serve running?)", ev.Name, err)
		}
		d = &got
	}
	v, err := g.View(number)
	v.Delivery = d
	return v, err
}

// ServeControl serves the controls over HTTP on loopback, for nestbot lab
// pr; it returns the base URL.
func (g *GitHub) ServeControl() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	handle := func(path string, do func(ctx context.Context, body []byte) (PRView, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			v, err := do(ctx, body)
			reply(w, v, err)
		})
	}
	handle("/pr/open", func(ctx context.Context, b []byte) (PRView, error) {
		var o PROpen
		if err := json.Unmarshal(b, &o); err != nil {
			return PRView{}, err
		}
		return g.OpenPRFrom(ctx, o)
	})
	for path, do := range map[string]func(context.Context, PRAction) (PRView, error){
		"/pr/comment": g.CommentOn, "/pr/approve": g.Approve, "/pr/merge": g.MergePR,
	} {
		handle(path, func(ctx context.Context, b []byte) (PRView, error) {
			var a PRAction
			if err := json.Unmarshal(b, &a); err != nil {
				return PRView{}, err
			}
			return do(ctx, a)
		})
	}
	mux.HandleFunc("GET /pr/{number}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("number"))
		if err != nil {
			http.Error(w, "not a pull request number", http.StatusBadRequest)
			return
		}
		v, err := g.View(n)
		reply(w, v, err)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	g.control = srv
	return "http://" + ln.Addr().String(), nil
}

func reply(w http.ResponseWriter, v PRView, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}
