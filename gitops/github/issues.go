package github

import (
	"context"
	"fmt"
	"strings"

	gogithub "github.com/google/go-github/v93/github"
)

// DriftLabel is the label of the drift issue.
const DriftLabel = "nest-drift"

// SyncIssue keeps one issue — the drift report — as it should be: the
// issue labelled DriftLabel whose body begins with marker (by
// the bot itself, Login). With open set, it is created, reopened or
// updated to title and body (body gets the marker in front if it lacks
// it, and is cut to GitHub's limit, saying so); without, an open one is closed (its body updated first when body
// is given). Nothing is written when the issue already is as asked. It
// returns the issue's number, 0 when there is none.
func (c *Client) SyncIssue(ctx context.Context, r Repo, marker, title, body string, open bool) (int, error) {
	op := fmt.Sprintf("github: sync the issue %q in %s", strings.TrimSpace(marker), r)
	if strings.TrimSpace(marker) == "" {
		return 0, fmt.Errorf("%s: the marker is empty: give the hidden marker that finds the issue again", op)
	}
	if body != "" && !strings.HasPrefix(body, marker) {
		body = marker + "\n" + body
	}
	if open && title == "" {
		return 0, fmt.Errorf("%s: an open issue needs a title", op)
	}
	body = cut(body, MaxCommentChars)
	unlock, err := c.sticky.lock(ctx, r.FullName()+" issue "+marker)
	if err != nil {
		return 0, c.wrap(op, err)
	}
	defer unlock()

	issue, err := c.findIssue(ctx, op, r, marker)
	if err != nil {
		return 0, err
	}
	switch {
	case issue == nil && !open:
		return 0, nil
	case issue == nil:
		if body == "" {
			body = marker + "\n"
		}
		var created *gogithub.Issue
		err := c.do(ctx, op+": create", true, func(ctx context.Context) (*gogithub.Response, error) {
			var resp *gogithub.Response
			var err error
			created, resp, err = c.gh.Issues.Create(ctx, r.Owner, r.Name, gogithub.CreateIssueRequest{
				Title: title, Body: &body, Labels: []string{DriftLabel},
			})
			return resp, err
		})
		if err != nil {
			return 0, err
		}
		return created.GetNumber(), nil
	}

	number := issue.GetNumber()
	var upd gogithub.UpdateIssueRequest
	changed := false
	if body != "" && issue.GetBody() != body {
		upd.Body, changed = &body, true
	}
	if open {
		if issue.GetTitle() != title {
			upd.Title, changed = &title, true
		}
		if issue.GetState() != "open" {
			upd.State, upd.StateReason, changed = new("open"), new("reopened"), true
		}
	} else if issue.GetState() == "open" {
		upd.State, upd.StateReason, changed = new("closed"), new("completed"), true
	} else {
		// Closed already: its last report stays as it was.
		return number, nil
	}
	if !changed {
		return number, nil
	}
	err = c.do(ctx, fmt.Sprintf("%s: update #%d", op, number), true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Issues.Update(ctx, r.Owner, r.Name, number, upd)
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	return number, nil
}

// findIssue finds the issue labelled DriftLabel that begins with marker:
// an open one first, else the one closed last.
func (c *Client) findIssue(ctx context.Context, op string, r Repo, marker string) (*gogithub.Issue, error) {
	opts := &gogithub.IssueListByRepoOptions{
		State:       "all",
		Labels:      []string{DriftLabel},
		Sort:        "updated",
		Direction:   "desc",
		ListOptions: gogithub.ListOptions{PerPage: 100},
	}
	login, err := c.Login(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var closed *gogithub.Issue
	for {
		var page []*gogithub.Issue
		var resp *gogithub.Response
		err := c.do(ctx, op+": list issues", false, func(ctx context.Context) (*gogithub.Response, error) {
			var err error
			page, resp, err = c.gh.Issues.ListByRepo(ctx, r.Owner, r.Name, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, is := range page {
			if is.IsPullRequest() || !strings.HasPrefix(is.GetBody(), marker) {
				continue
			}
			if !own(is.GetUser(), login) {
				continue
			}
			if is.GetState() == "open" {
				return is, nil
			}
			if closed == nil {
				closed = is
			}
		}
		if resp.NextPage == 0 {
			return closed, nil
		}
		opts.ListOptions.Page = resp.NextPage
	}
}
