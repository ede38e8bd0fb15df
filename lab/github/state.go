package github

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// state is everything the server knows; guarded by Server.mu.
type state struct {
	nextID int64
	users  map[string]*user  // by lower-case login
	tokens map[string]*token // by the token itself
	repos  map[string]*repo  // by lower-case "owner/name"
}

func newState() *state {
	return &state{nextID: 1000, users: map[string]*user{}, tokens: map[string]*token{}, repos: map[string]*repo{}}
}

func (st *state) id() int64 {
	st.nextID++
	return st.nextID
}

type user struct {
	id    int64
	login string
	kind  string // "User", "Bot" or "Organization"
}

// token is a credential the API and git accept.
type token struct {
	user    *user
	app     *app // set for installation tokens and the Actions token
	expires time.Time
	limit   int // x-ratelimit-limit
	used    int
	reset   time.Time
}

type repo struct {
	id            int64
	owner         *user
	name          string
	defaultBranch string
	private       bool
	parent        *repo // set for a fork
	dir           string
	created       time.Time
	pushed        time.Time
	collaborators map[string]string // lower-case login → admin, maintain, write, triage or read

	nextNumber  int
	issues      map[int]*issue // issues and pull requests share numbers, as on GitHub
	labels      map[string]*label
	comments    map[int64]*comment
	deleted     map[int64]*comment // for the "deleted" issue_comment event
	checkRuns   map[int64]*checkRun
	deployments []*deployment
}

func (r *repo) fullName() string { return r.owner.login + "/" + r.name }

type label struct {
	id    int64
	name  string
	color string
}

type issue struct {
	id          int64
	number      int
	title       string
	body        *string
	user        *user
	labels      []*label
	state       string // open or closed
	stateReason string
	created     time.Time
	updated     time.Time
	closed      time.Time
	closedBy    *user
	pr          *pull // set for a pull request
	app         *app  // the app that created it, if any
}

type pull struct {
	headRepo *repo
	headRef  string
	baseRef  string
	headSHA  string // moved by pushes while open (refreshPullsLocked)
	baseSHA  string
	draft    bool

	prevHeadSHA string // the head before the last push, for "synchronize"
	mergeKey    string // base..head that mergeClean was computed for
	mergeClean  bool

	mergeable *bool // overrides what git merge-tree says
	// blocked says branch protection holds the pull request back (a
	// required check or review missing): mergeable_state "blocked".
	blocked  bool
	merged   bool
	mergedAt time.Time
	mergedBy *user
	mergeSHA string
	reviews  []*review
}

type review struct {
	id       int64
	user     *user
	state    string
	body     string
	commitID string
	at       time.Time
}

type comment struct {
	id        int64
	number    int
	body      string
	user      *user
	app       *app
	created   time.Time
	updated   time.Time
	reactions []*reaction
}

type reaction struct {
	id      int64
	content string
	user    *user
	created time.Time
}

type checkRun struct {
	id          int64
	suiteID     int64
	name        string
	headSHA     string
	status      string
	conclusion  string
	detailsURL  string
	externalID  string
	started     time.Time
	completed   time.Time
	title       *string
	summary     *string
	text        *string
	annotations []Annotation
	app         *app
}

type deployment struct {
	id          int64
	sha         string
	ref         string
	task        string
	environment string
	description *string
	payload     json.RawMessage
	transient   bool
	production  bool
	creator     *user
	app         *app
	created     time.Time
	updated     time.Time
	statuses    []*deploymentStatus
}

type deploymentStatus struct {
	id             int64
	state          string
	description    string
	environment    string
	environmentURL string
	logURL         string
	targetURL      string
	creator        *user
	app            *app
	created        time.Time
}

// Permissions a collaborator may hold, strongest first.
var permissions = []string{"admin", "maintain", "write", "triage", "read"}

func permissionRank(p string) int {
	if i := slices.Index(permissions, p); i >= 0 {
		return len(permissions) - i
	}
	return 0
}

// userLocked returns the user login, creating it if needed. A login ending
// in "[bot]" is a Bot.
func (s *Server) userLocked(login string) *user {
	key := strings.ToLower(login)
	if u, ok := s.st.users[key]; ok {
		return u
	}
	u := &user{id: s.st.id(), login: login, kind: "User"}
	if strings.HasSuffix(login, "[bot]") {
		u.kind = "Bot"
	}
	s.st.users[key] = u
	return u
}

func (s *Server) repoLocked(owner, name string) (*repo, error) {
	r, ok := s.st.repos[strings.ToLower(owner+"/"+name)]
	if !ok {
		return nil, fmt.Errorf("labgithub: no repository %s/%s; create it with CreateRepo", owner, name)
	}
	return r, nil
}

// permissionLocked is login's permission on r: "admin" for its owner, the
// collaborator's permission, "read" on a public repository and "none"
// otherwise.
func (r *repo) permission(login string) string {
	if strings.EqualFold(login, r.owner.login) {
		return "admin"
	}
	if p, ok := r.collaborators[strings.ToLower(login)]; ok {
		return p
	}
	if r.private {
		return "none"
	}
	return "read"
}

// AddUser makes sure login exists (a login ending in "[bot]" is a Bot) and
// returns its id.
func (s *Server) AddUser(login string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userLocked(login).id
}

// SetPermission gives login a permission on owner/repo: admin, maintain,
// write, triage, read, or none (which removes the collaborator).
func (s *Server) SetPermission(owner, repoName, login, permission string) error {
	if permission != "none" && permissionRank(permission) == 0 {
		return fmt.Errorf("labgithub: permission %q for %s on %s/%s: want one of %s or none", permission, login, owner, repoName, strings.Join(permissions, ", "))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return err
	}
	s.userLocked(login)
	if permission == "none" {
		delete(r.collaborators, strings.ToLower(login))
		return nil
	}
	r.collaborators[strings.ToLower(login)] = permission
	return nil
}

// Permission is login's permission on owner/repo as the API reports it
// (admin, maintain, write, triage, read or none).
func (s *Server) Permission(owner, repoName, login string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return "", err
	}
	return r.permission(login), nil
}

// Comment is an issue or pull request comment, as the server holds it.
type Comment struct {
	ID        int64
	Number    int // the issue or pull request
	Body      string
	User      string
	Created   time.Time
	Updated   time.Time
	Reactions []Reaction
}

// Reaction is one reaction to a comment.
type Reaction struct {
	ID      int64
	Content string // +1, -1, laugh, confused, heart, hooray, rocket, eyes
	User    string
}

func (c *comment) snapshot() Comment {
	out := Comment{ID: c.id, Number: c.number, Body: c.body, User: c.user.login, Created: c.created, Updated: c.updated}
	for _, r := range c.reactions {
		out.Reactions = append(out.Reactions, Reaction{ID: r.id, Content: r.content, User: r.user.login})
	}
	return out
}

// Comments lists the comments on issue or pull request number, oldest
// first.
func (s *Server) Comments(owner, repoName string, number int) ([]Comment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return nil, err
	}
	var out []Comment
	for _, c := range r.sortedComments(number) {
		out = append(out, c.snapshot())
	}
	return out, nil
}

func (r *repo) sortedComments(number int) []*comment {
	var cs []*comment
	for _, c := range r.comments {
		if c.number == number {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *comment) int { return int(a.id - b.id) })
	return cs
}

// AddComment posts body on issue or pull request number as login, as a
// person would in the browser (for example "/nest plan"). Make the event
// nestbot would receive with IssueCommentEvent.
func (s *Server) AddComment(owner, repoName string, number int, login, body string) (Comment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return Comment{}, err
	}
	is, ok := r.issues[number]
	if !ok {
		return Comment{}, fmt.Errorf("labgithub: comment on %s#%d: no such issue or pull request", r.fullName(), number)
	}
	now := s.now()
	c := &comment{id: s.st.id(), number: number, body: body, user: s.userLocked(login), created: now, updated: now}
	r.comments[c.id] = c
	is.updated = now
	return c.snapshot(), nil
}

// Annotation is one check run annotation.
type Annotation struct {
	Path       string `json:"path"`
	StartLine  int    `json:"start_line"`
	EndLine    int    `json:"end_line"`
	StartCol   *int   `json:"start_column,omitempty"`
	EndCol     *int   `json:"end_column,omitempty"`
	Level      string `json:"annotation_level"`
	Message    string `json:"message"`
	Title      string `json:"title,omitempty"`
	RawDetails string `json:"raw_details,omitempty"`
}

// CheckRun is a check run as the server holds it.
type CheckRun struct {
	ID          int64
	Name        string
	HeadSHA     string
	Status      string // queued, in_progress, completed, ...
	Conclusion  string // set once completed
	DetailsURL  string
	ExternalID  string
	Title       string
	Summary     string
	Text        string
	Annotations []Annotation // every annotation sent, across requests
	App         string       // the slug of the app that created it
	Started     time.Time
	Completed   time.Time
}

func (c *checkRun) snapshot() CheckRun {
	return CheckRun{
		ID: c.id, Name: c.name, HeadSHA: c.headSHA, Status: c.status, Conclusion: c.conclusion,
		DetailsURL: c.detailsURL, ExternalID: c.externalID,
		Title: deref(c.title), Summary: deref(c.summary), Text: deref(c.text),
		Annotations: slices.Clone(c.annotations), App: c.app.slug, Started: c.started, Completed: c.completed,
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// CheckRuns lists the check runs on commit sha (all of the repository's
// when sha is empty), oldest first.
func (s *Server) CheckRuns(owner, repoName, sha string) ([]CheckRun, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return nil, err
	}
	var out []CheckRun
	for _, c := range r.sortedCheckRuns() {
		if sha == "" || c.headSHA == sha {
			out = append(out, c.snapshot())
		}
	}
	return out, nil
}

func (r *repo) sortedCheckRuns() []*checkRun {
	cs := make([]*checkRun, 0, len(r.checkRuns))
	for _, c := range r.checkRuns {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *checkRun) int { return int(a.id - b.id) })
	return cs
}

// Deployment is a deployment and its statuses, oldest first.
type Deployment struct {
	ID          int64
	Ref         string
	SHA         string
	Task        string
	Environment string
	Description string
	Payload     json.RawMessage
	Creator     string
	// Production and Transient are production_environment and
	// transient_environment, as sent or as GitHub defaults them.
	Production, Transient bool
	Statuses              []DeploymentStatus
}

// DeploymentStatus is one status of a deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	Description    string
	Environment    string
	EnvironmentURL string
	LogURL         string
	Creator        string
}

// Deployments lists owner/repo's deployments, oldest first.
func (s *Server) Deployments(owner, repoName string) ([]Deployment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return nil, err
	}
	var out []Deployment
	for _, d := range r.deployments {
		o := Deployment{ID: d.id, Ref: d.ref, SHA: d.sha, Task: d.task, Environment: d.environment,
			Description: deref(d.description), Payload: slices.Clone(d.payload), Creator: d.creator.login,
			Production: d.production, Transient: d.transient}
		for _, st := range d.statuses {
			o.Statuses = append(o.Statuses, DeploymentStatus{ID: st.id, State: st.state, Description: st.description,
				Environment: st.environment, EnvironmentURL: st.environmentURL, LogURL: st.logURL, Creator: st.creator.login})
		}
		out = append(out, o)
	}
	return out, nil
}

// Issue is an issue (not a pull request) as the server holds it.
type Issue struct {
	Number int
	Title  string
	Body   string
	State  string // open or closed
	User   string
	Labels []string
}

// Issues lists owner/repo's issues, pull requests left out, by number.
func (s *Server) Issues(owner, repoName string) ([]Issue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return nil, err
	}
	var out []Issue
	for _, is := range r.sortedIssues() {
		if is.pr != nil {
			continue
		}
		o := Issue{Number: is.number, Title: is.title, Body: deref(is.body), State: is.state, User: is.user.login}
		for _, l := range is.labels {
			o.Labels = append(o.Labels, l.name)
		}
		out = append(out, o)
	}
	return out, nil
}

func (r *repo) sortedIssues() []*issue {
	out := make([]*issue, 0, len(r.issues))
	for _, is := range r.issues {
		out = append(out, is)
	}
	slices.SortFunc(out, func(a, b *issue) int { return a.number - b.number })
	return out
}

// labelLocked returns r's label name, creating it (grey) if needed.
func (s *Server) labelLocked(r *repo, name string) *label {
	key := strings.ToLower(name)
	if l, ok := r.labels[key]; ok {
		return l
	}
	l := &label{id: s.st.id(), name: name, color: "ededed"}
	r.labels[key] = l
	return l
}
