package github

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// refreshPullsLocked moves the open pull requests whose head or base is in
// r to their branches' tips, and keeps refs/pull/<n>/head in the base
// repository, as GitHub does.
func (s *Server) refreshPullsLocked(r *repo) {
	for _, base := range s.st.repos {
		for _, is := range base.issues {
			p := is.pr
			if p == nil || is.state != "open" || (base != r && p.headRepo != r) {
				continue
			}
			head := s.resolve(p.headRepo.dir, "refs/heads/"+p.headRef)
			if b := s.resolve(base.dir, "refs/heads/"+p.baseRef); b != "" {
				p.baseSHA = b
			}
			if head == "" || head == p.headSHA {
				continue
			}
			p.prevHeadSHA, p.headSHA = p.headSHA, head
			is.updated = s.now()
			s.updatePullRef(base, is)
		}
	}
}

// updatePullRef points refs/pull/<n>/head of base at the pull request's
// head, fetching it from a fork.
func (s *Server) updatePullRef(base *repo, is *issue) {
	ref := "refs/pull/" + strconv.Itoa(is.number) + "/head"
	p := is.pr
	var err error
	if p.headRepo == base {
		_, err = s.git(context.Background(), base.dir, nil, "update-ref", ref, p.headSHA)
	} else {
		_, err = s.git(context.Background(), base.dir, nil, "fetch", "--quiet", p.headRepo.dir, "+"+p.headSHA+":"+ref)
	}
	if err != nil {
		s.logf("github: %s#%d: update %s: %v", base.fullName(), is.number, ref, err)
	}
}

// prSHAs are a pull request's head and base commits.
func (s *Server) prSHAs(_ *repo, is *issue) (head, base string) {
	return is.pr.headSHA, is.pr.baseSHA
}

// prMergeable says whether the pull request merges cleanly (git
// merge-tree), unless SetMergeable overrode it; nil once merged or closed.
func (s *Server) prMergeable(r *repo, is *issue) *bool {
	p := is.pr
	if p.mergeable != nil {
		v := *p.mergeable
		return &v
	}
	if is.state != "open" {
		return nil
	}
	key := p.baseSHA + ".." + p.headSHA
	if p.mergeKey != key {
		_, err := s.git(context.Background(), r.dir, nil, "merge-tree", "--write-tree", "--no-messages", p.baseSHA, p.headSHA)
		switch exitCode(err) {
		case 0:
			p.mergeClean = true
		case 1:
			p.mergeClean = false
		default:
			s.logf("github: %s#%d: merge-tree: %v", r.fullName(), is.number, err)
			return nil
		}
		p.mergeKey = key
	}
	v := p.mergeClean
	return &v
}

type prStats struct{ commits, additions, deletions, files int }

func (s *Server) prStats(r *repo, is *issue) prStats {
	p := is.pr
	var st prStats
	if out, err := s.git(context.Background(), r.dir, nil, "rev-list", "--count", p.baseSHA+".."+p.headSHA); err == nil {
		st.commits, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	for _, f := range s.diffFiles(r, p.baseSHA, p.headSHA) {
		st.files++
		st.additions += f.additions
		st.deletions += f.deletions
	}
	return st
}

// PROptions configure OpenPR.
type PROptions struct {
	Base  string // the default branch if empty
	Title string // "Update <head>" if empty
	Body  string
	// User opens it; the head repository's owner if empty.
	User  string
	Draft bool
	// Fork is the owner of the fork (made with Fork) the head branch is
	// in; empty means the branch is in owner/repo itself.
	Fork string
}

// PullRequest is a pull request as the server holds it.
type PullRequest struct {
	Number         int
	Title          string
	Body           string
	User           string
	State          string // open or closed
	Draft          bool
	HeadRepo       string // owner/name
	Fork           bool   // the head is in a fork
	HeadRef        string
	HeadSHA        string
	BaseRef        string
	BaseSHA        string
	Merged         bool
	MergeCommitSHA string
	Reviews        []Review
}

// Review is one review of a pull request.
type Review struct {
	ID       int64
	User     string
	State    string // APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
	Body     string
	CommitID string
}

func (s *Server) pullSnapshot(r *repo, is *issue) PullRequest {
	p := is.pr
	out := PullRequest{Number: is.number, Title: is.title, Body: deref(is.body), User: is.user.login, State: is.state,
		Draft: p.draft, HeadRepo: p.headRepo.fullName(), Fork: p.headRepo != r, HeadRef: p.headRef, HeadSHA: p.headSHA,
		BaseRef: p.baseRef, BaseSHA: p.baseSHA, Merged: p.merged, MergeCommitSHA: p.mergeSHA}
	for _, rv := range p.reviews {
		out.Reviews = append(out.Reviews, Review{ID: rv.id, User: rv.user.login, State: rv.state, Body: rv.body, CommitID: rv.commitID})
	}
	return out
}

// OpenPR opens a pull request from branch head (pushed already, to
// owner/repo or to the fork o.Fork) into o.Base. Make the webhook event
// with PullRequestEvent(owner, repo, n, "opened").
func (s *Server) OpenPR(owner, repoName, head string, o PROptions) (PullRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return PullRequest{}, err
	}
	headRepo := r
	if o.Fork != "" {
		if headRepo, err = s.repoLocked(o.Fork, r.name); err != nil {
			return PullRequest{}, err
		}
		if headRepo.parent != r {
			return PullRequest{}, fmt.Errorf("labgithub: open a pull request from %s: it is not a fork of %s", headRepo.fullName(), r.fullName())
		}
	}
	if o.Base == "" {
		o.Base = r.defaultBranch
	}
	what := fmt.Sprintf("labgithub: open a pull request %s:%s into %s:%s", headRepo.fullName(), head, r.fullName(), o.Base)
	headSHA := s.resolve(headRepo.dir, "refs/heads/"+head)
	if headSHA == "" {
		return PullRequest{}, fmt.Errorf("%s: no branch %s; push it first (Commit)", what, head)
	}
	baseSHA := s.resolve(r.dir, "refs/heads/"+o.Base)
	if baseSHA == "" {
		return PullRequest{}, fmt.Errorf("%s: no base branch %s", what, o.Base)
	}
	for _, is := range r.issues {
		if is.pr != nil && is.state == "open" && is.pr.headRepo == headRepo && is.pr.headRef == head && is.pr.baseRef == o.Base {
			return PullRequest{}, fmt.Errorf("%s: #%d is open already", what, is.number)
		}
	}
	if o.User == "" {
		o.User = headRepo.owner.login
	}
	if o.Title == "" {
		o.Title = "Update " + head
	}
	now := s.now()
	r.nextNumber++
	body := o.Body
	is := &issue{id: s.st.id(), number: r.nextNumber, title: o.Title, body: &body, user: s.userLocked(o.User), state: "open",
		created: now, updated: now,
		pr: &pull{headRepo: headRepo, headRef: head, baseRef: o.Base, headSHA: headSHA, baseSHA: baseSHA, draft: o.Draft}}
	r.issues[is.number] = is
	s.updatePullRef(r, is)
	return s.pullSnapshot(r, is), nil
}

// PullRequest returns pull request number of owner/repo.
func (s *Server) PullRequest(owner, repoName string, number int) (PullRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, is, err := s.pullLocked(owner, repoName, number)
	if err != nil {
		return PullRequest{}, err
	}
	return s.pullSnapshot(r, is), nil
}

// AddReview records a review of pull request number by login on its
// current head: state is APPROVED, CHANGES_REQUESTED or COMMENTED.
func (s *Server) AddReview(owner, repoName string, number int, login, state, body string) (Review, error) {
	switch state {
	case "APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED":
	default:
		return Review{}, fmt.Errorf("labgithub: review state %q: want APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, is, err := s.pullLocked(owner, repoName, number)
	if err != nil {
		return Review{}, err
	}
	rv := &review{id: s.st.id(), user: s.userLocked(login), state: state, body: body, commitID: is.pr.headSHA, at: s.now()}
	is.pr.reviews = append(is.pr.reviews, rv)
	return Review{ID: rv.id, User: login, State: state, Body: body, CommitID: rv.commitID}, nil
}

// pullLocked finds pull request number of owner/repo; s.mu is held.
func (s *Server) pullLocked(owner, repoName string, number int) (*repo, *issue, error) {
	r, err := s.repoLocked(owner, repoName)
	if err != nil {
		return nil, nil, err
	}
	is, ok := r.issues[number]
	if !ok || is.pr == nil {
		return nil, nil, fmt.Errorf("labgithub: %s has no pull request #%d", r.fullName(), number)
	}
	return r, is, nil
}

// SetMergeable overrides what the server says about whether pull request
// number merges cleanly; nil goes back to asking git.
func (s *Server) SetMergeable(owner, repoName string, number int, mergeable *bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, is, err := s.pullLocked(owner, repoName, number)
	if err != nil {
		return err
	}
	is.pr.mergeable = mergeable
	return nil
}

// SetBlocked says whether branch protection holds pull request number back
// (a required status check or review is missing): GitHub then answers
// mergeable_state "blocked", though it merges cleanly.
func (s *Server) SetBlocked(owner, repoName string, number int, blocked bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, is, err := s.pullLocked(owner, repoName, number)
	if err != nil {
		return err
	}
	is.pr.blocked = blocked
	return nil
}

// Merge merges pull request number as login with a real merge commit
// (git merge --no-ff, in a temporary clone, pushed to the base branch),
// and marks it merged and closed. The push event of the base branch is
// PushEvent(pushed); the pull request event is
// PullRequestEvent(owner, repo, number, "closed").
func (s *Server) Merge(ctx context.Context, owner, repoName string, number int, login string) (Pushed, error) {
	s.mu.Lock()
	r, err := s.repoLocked(owner, repoName)
	var is *issue
	if err == nil {
		var ok bool
		is, ok = r.issues[number]
		switch {
		case !ok || is.pr == nil:
			err = fmt.Errorf("labgithub: merge %s#%d: no such pull request", r.fullName(), number)
		case is.state != "open":
			err = fmt.Errorf("labgithub: merge %s#%d: it is %s", r.fullName(), number, is.state)
		case is.pr.draft:
			err = fmt.Errorf("labgithub: merge %s#%d: it is a draft", r.fullName(), number)
		}
	}
	if err != nil {
		s.mu.Unlock()
		return Pushed{}, err
	}
	if login == "" {
		login = r.owner.login
	}
	s.userLocked(login)
	p := is.pr
	headDir, headRef, baseRef, title := p.headRepo.dir, p.headRef, p.baseRef, is.title
	from := p.headRepo.owner.login + "/" + headRef
	s.mu.Unlock()

	what := fmt.Sprintf("labgithub: merge %s#%d", r.fullName(), number)
	tmp, err := os.MkdirTemp("", "nestbot-lab-merge-")
	if err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	env := s.authorEnv(login)
	run := func(args ...string) ([]byte, error) { return s.git(ctx, tmp, env, args...) }
	if _, err := s.git(ctx, s.dir, nil, "clone", "--quiet", "--branch", baseRef, r.dir, tmp); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	before := s.resolve(r.dir, "refs/heads/"+baseRef)
	if _, err := run("fetch", "--quiet", headDir, "refs/heads/"+headRef); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	msg := fmt.Sprintf("Merge pull request #%d from %s\n\n%s", number, from, title)
	if _, err := run("merge", "--quiet", "--no-ff", "--message", msg, "FETCH_HEAD"); err != nil {
		return Pushed{}, fmt.Errorf("%s: it does not merge cleanly: %w", what, err)
	}
	if _, err := run("push", "--quiet", "origin", "HEAD:refs/heads/"+baseRef); err != nil {
		return Pushed{}, fmt.Errorf("%s: %w", what, err)
	}
	after := s.resolve(r.dir, "refs/heads/"+baseRef)
	headSHA := s.resolve(tmp, "FETCH_HEAD")

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	p.merged, p.mergedAt, p.mergedBy, p.mergeSHA = true, now, s.userLocked(login), after
	if headSHA != "" {
		p.headSHA = headSHA
	}
	p.baseSHA = before
	is.state, is.closed, is.closedBy, is.updated = "closed", now, s.userLocked(login), now
	r.pushed = now
	s.refreshPullsLocked(r)
	return Pushed{Owner: r.owner.login, Repo: r.name, Ref: "refs/heads/" + baseRef, Before: before, After: after, Pusher: login}, nil
}
