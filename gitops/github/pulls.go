package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	gogithub "github.com/google/go-github/v93/github"
)

// PR is what nestbot needs of a pull request.
type PR struct {
	Number  int
	HeadSHA string
	HeadRef string
	BaseRef string
	// DefaultBranch is the base repository's default branch, as GitHub
	// says: the branch whose nest.yaml is trusted.
	DefaultBranch string
	HeadRepo      string // full name; "" when the fork was deleted
	Fork          bool   // the head is in another repository than the base
	Draft         bool
	Merged        bool
	// Mergeable is nil while GitHub is still computing it.
	Mergeable      *bool
	MergeableState string
	Author         string
	MergeCommitSHA string
	Title          string
	URL            string // the page on GitHub
	State          string // "open" or "closed"
}

func prOf(p *gogithub.PullRequest) PR {
	pr := PR{
		Number:         p.GetNumber(),
		HeadSHA:        p.GetHead().GetSHA(),
		HeadRef:        p.GetHead().GetRef(),
		BaseRef:        p.GetBase().GetRef(),
		DefaultBranch:  p.GetBase().GetRepo().GetDefaultBranch(),
		HeadRepo:       p.GetHead().GetRepo().GetFullName(),
		Draft:          p.GetDraft(),
		Merged:         p.GetMerged() || p.MergedAt != nil,
		Mergeable:      p.Mergeable,
		MergeableState: p.GetMergeableState(),
		Author:         p.GetUser().GetLogin(),
		MergeCommitSHA: p.GetMergeCommitSHA(),
		Title:          p.GetTitle(),
		URL:            p.GetHTMLURL(),
		State:          p.GetState(),
	}
	base := p.GetBase().GetRepo().GetFullName()
	pr.Fork = pr.HeadRepo == "" || (base != "" && pr.HeadRepo != base)
	return pr
}

// PullRequest reads pull request number of r.
func (c *Client) PullRequest(ctx context.Context, r Repo, number int) (*PR, error) {
	var p *gogithub.PullRequest
	err := c.do(ctx, fmt.Sprintf("github: read pull request %s#%d", r, number), false, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		p, resp, err = c.gh.PullRequests.Get(ctx, r.Owner, r.Name, number)
		return resp, err
	})
	if err != nil {
		return nil, err
	}
	pr := prOf(p)
	return &pr, nil
}

// Approved says whether pull request number is approved at headSHA by
// someone who may merge it: by the latest review of each reviewer other
// than author (the pull request's), someone with write access approved (at
// headSHA, when it is given: an approval of an older push does not count)
// and no writer's request for changes stands. A review by the author, or by
// anyone without write access — on a public repository anyone may review —
// counts for nothing, as branch protection counts it. A dismissed review
// stands for nothing; a comment leaves the reviewer's previous review as it
// was.
func (c *Client) Approved(ctx context.Context, r Repo, number int, headSHA, author string) (bool, error) {
	op := fmt.Sprintf("github: read the reviews of %s#%d", r, number)
	latest := map[string]*gogithub.PullRequestReview{}
	var order []string
	opts := &gogithub.ListOptions{PerPage: 100}
	for {
		var page []*gogithub.PullRequestReview
		var resp *gogithub.Response
		err := c.do(ctx, op, false, func(ctx context.Context) (*gogithub.Response, error) {
			var err error
			page, resp, err = c.gh.PullRequests.ListReviews(ctx, r.Owner, r.Name, number, opts)
			return resp, err
		})
		if err != nil {
			return false, err
		}
		// Reviews come oldest first: a later one replaces an earlier one.
		for _, rv := range page {
			switch rv.GetState() {
			case "APPROVED", "CHANGES_REQUESTED", "DISMISSED":
			default: // COMMENTED, PENDING
				continue
			}
			who := rv.GetUser().GetLogin()
			if who == "" || strings.EqualFold(who, author) {
				continue
			}
			if _, seen := latest[who]; !seen {
				order = append(order, who)
			}
			latest[who] = rv
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	approved := false
	for _, who := range order {
		rv := latest[who]
		counts := rv.GetState() == "CHANGES_REQUESTED" || (rv.GetState() == "APPROVED" && (headSHA == "" || rv.GetCommitID() == headSHA))
		if !counts {
			continue
		}
		perm, err := c.Permission(ctx, r, who)
		if err != nil {
			return false, err
		}
		if !CanWrite(perm) {
			continue // anyone may review; only a writer's review counts
		}
		if rv.GetState() == "CHANGES_REQUESTED" {
			return false, nil
		}
		approved = true
	}
	return approved, nil
}

// PullsForCommit lists the pull requests that hold commit sha: after a
// merge, the merged pull request.
func (c *Client) PullsForCommit(ctx context.Context, r Repo, sha string) ([]PR, error) {
	op := fmt.Sprintf("github: list the pull requests of commit %s in %s", short(sha), r)
	var prs []PR
	opts := &gogithub.ListOptions{PerPage: 100}
	for {
		var page []*gogithub.PullRequest
		var resp *gogithub.Response
		err := c.do(ctx, op, false, func(ctx context.Context) (*gogithub.Response, error) {
			var err error
			page, resp, err = c.gh.PullRequests.ListPullRequestsWithCommit(ctx, r.Owner, r.Name, sha, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			prs = append(prs, prOf(p))
		}
		if resp.NextPage == 0 {
			return prs, nil
		}
		opts.Page = resp.NextPage
	}
}

// Permission is user's role on r: "admin", "maintain", "write", "triage",
// "read", or "none" (also for a user GitHub does not know). A custom role
// is reported as the base permission it extends.
func (c *Client) Permission(ctx context.Context, r Repo, user string) (string, error) {
	var lvl *gogithub.RepositoryPermissionLevel
	err := c.do(ctx, fmt.Sprintf("github: read %s's permission on %s", user, r), false, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		lvl, resp, err = c.gh.Repositories.GetPermissionLevel(ctx, r.Owner, r.Name, user)
		return resp, err
	})
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return "none", nil
		}
		return "", err
	}
	switch role := lvl.GetRoleName(); role {
	case "admin", "maintain", "write", "triage", "read":
		return role, nil
	}
	if p := lvl.GetPermission(); p != "" {
		return p, nil
	}
	return "none", nil
}

// CanWrite says whether a permission from Permission lets its user run
// /nest commands: write, maintain or admin.
func CanWrite(perm string) bool {
	switch perm {
	case "admin", "maintain", "write":
		return true
	}
	return false
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
