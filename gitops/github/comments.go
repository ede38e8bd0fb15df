package github

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"

	gogithub "github.com/google/go-github/v93/github"
)

// MaxCommentChars is GitHub's limit on the body of a comment or issue:
// 65,536 characters. reconcile.MaxCommentSize is the same number.
const MaxCommentChars = 65536

// StickyResult says what UpsertSticky did.
type StickyResult struct {
	Created, Updated, Deleted, Unchanged int
	IDs                                  []int64 // the comments that hold the parts, in order
}

// Writes is how many write requests UpsertSticky sent.
func (s StickyResult) Writes() int { return s.Created + s.Updated + s.Deleted }

// UpsertSticky keeps the parts of one message — the plan of a fleet — as
// comments on issue or pull request number, one comment per part, each part
// beginning with marker (reconcile.MarkdownMarker gives it, and
// reconcile.RenderMarkdown begins every part with it).
//
// The comments that already begin with marker, by the bot itself (Login),
// are the message's earlier parts, in the order they were made: the k-th
// of them becomes part k. A comment whose body is already that part is left
// alone; another is edited; parts beyond those comments are created, in
// order; comments beyond the parts are deleted. So a plan is never posted
// anew: it is edited in place, and an unchanged plan makes no write at all.
// Calls for the same comment thread are serialized within the Client.
func (c *Client) UpsertSticky(ctx context.Context, r Repo, number int, marker string, parts []string) (StickyResult, error) {
	op := fmt.Sprintf("github: update the comments %q on %s#%d", strings.TrimSpace(marker), r, number)
	var res StickyResult
	if err := checkSticky(marker, parts); err != nil {
		return res, fmt.Errorf("%s: %w", op, err)
	}
	unlock, err := c.sticky.lock(ctx, fmt.Sprintf("%s#%d %s", r, number, marker))
	if err != nil {
		return res, c.wrap(op, err)
	}
	defer unlock()

	existing, err := c.markedComments(ctx, op, r, number, marker)
	if err != nil {
		return res, err
	}
	for i, part := range parts {
		if i < len(existing) {
			cm := existing[i]
			if cm.GetBody() == part {
				res.Unchanged++
				res.IDs = append(res.IDs, cm.GetID())
				continue
			}
			if err := c.editComment(ctx, op, r, cm.GetID(), part); err != nil {
				return res, err
			}
			res.Updated++
			res.IDs = append(res.IDs, cm.GetID())
			continue
		}
		id, err := c.createComment(ctx, op, r, number, part)
		if err != nil {
			return res, err
		}
		res.Created++
		res.IDs = append(res.IDs, id)
	}
	for _, cm := range existing[min(len(parts), len(existing)):] {
		err := c.do(ctx, fmt.Sprintf("%s: delete surplus comment %d", op, cm.GetID()), true, func(ctx context.Context) (*gogithub.Response, error) {
			return c.gh.Issues.DeleteComment(ctx, r.Owner, r.Name, cm.GetID())
		})
		if err != nil && !isStatus(err, http.StatusNotFound) {
			return res, err
		}
		res.Deleted++
	}
	return res, nil
}

// checkSticky refuses parts that the next UpsertSticky would not find again,
// or that GitHub would refuse.
func checkSticky(marker string, parts []string) error {
	if strings.TrimSpace(marker) == "" {
		return fmt.Errorf("the marker is empty: give the hidden marker that opens each part (reconcile.MarkdownMarker)")
	}
	if len(parts) == 0 {
		return fmt.Errorf("no parts: a sticky message has at least one part")
	}
	for i, p := range parts {
		if !strings.HasPrefix(p, marker) {
			return fmt.Errorf("part %d of %d does not begin with the marker %q, so it could not be found again: begin every part with it", i+1, len(parts), marker)
		}
		if n := utf8.RuneCountInString(p); n > MaxCommentChars {
			return fmt.Errorf("part %d of %d has %d characters, over GitHub's limit of %d: split it into more parts", i+1, len(parts), n, MaxCommentChars)
		}
	}
	return nil
}

// markedComments lists the comments on number that begin with marker, by
// the bot itself (Login), oldest first. Another author's comment is never
// among them, whatever it begins with.
func (c *Client) markedComments(ctx context.Context, op string, r Repo, number int, marker string) ([]*gogithub.IssueComment, error) {
	login, err := c.Login(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var found []*gogithub.IssueComment
	opts := &gogithub.IssueListCommentsOptions{ListOptions: gogithub.ListOptions{PerPage: 100}}
	for {
		var page []*gogithub.IssueComment
		var resp *gogithub.Response
		err := c.do(ctx, op+": list comments", false, func(ctx context.Context) (*gogithub.Response, error) {
			var err error
			page, resp, err = c.gh.Issues.ListComments(ctx, r.Owner, r.Name, number, opts)
			return resp, err
		})
		if err != nil {
			return nil, err
		}
		for _, cm := range page {
			if !strings.HasPrefix(cm.GetBody(), marker) {
				continue
			}
			if !own(cm.GetUser(), login) {
				continue
			}
			found = append(found, cm)
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	sort.SliceStable(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if !a.GetCreatedAt().Equal(b.GetCreatedAt()) {
			return a.GetCreatedAt().Before(b.GetCreatedAt().Time)
		}
		return a.GetID() < b.GetID()
	})
	return found, nil
}

func (c *Client) createComment(ctx context.Context, op string, r Repo, number int, body string) (int64, error) {
	var cm *gogithub.IssueComment
	err := c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		cm, resp, err = c.gh.Issues.CreateComment(ctx, r.Owner, r.Name, number, gogithub.IssueCommentRequest{Body: body})
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	return cm.GetID(), nil
}

func (c *Client) editComment(ctx context.Context, op string, r Repo, id int64, body string) error {
	return c.do(ctx, fmt.Sprintf("%s: edit comment %d", op, id), true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Issues.UpdateComment(ctx, r.Owner, r.Name, id, gogithub.IssueCommentRequest{Body: body})
		return resp, err
	})
}

// Comment posts body as a new comment on issue or pull request number: a
// reply to a command, the report of an apply.
func (c *Client) Comment(ctx context.Context, r Repo, number int, body string) (int64, error) {
	op := fmt.Sprintf("github: comment on %s#%d", r, number)
	if err := checkBody(body); err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	return c.createComment(ctx, op, r, number, body)
}

// EditComment replaces the body of comment id: a reply that said "working"
// and now says how it went.
func (c *Client) EditComment(ctx context.Context, r Repo, id int64, body string) error {
	op := fmt.Sprintf("github: edit comment %d in %s", id, r)
	if err := checkBody(body); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Issues.UpdateComment(ctx, r.Owner, r.Name, id, gogithub.IssueCommentRequest{Body: body})
		return resp, err
	})
}

func checkBody(body string) error {
	if strings.TrimSpace(body) == "" {
		return fmt.Errorf("the body is empty")
	}
	if n := utf8.RuneCountInString(body); n > MaxCommentChars {
		return fmt.Errorf("the body has %d characters, over GitHub's limit of %d: shorten it or split it", n, MaxCommentChars)
	}
	return nil
}

// Reactions GitHub knows, for React.
var reactions = []string{"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}

// React adds a reaction ("eyes" acknowledges a command) to issue comment
// commentID; adding one that is already there is no error.
func (c *Client) React(ctx context.Context, r Repo, commentID int64, content string) error {
	op := fmt.Sprintf("github: react %q to comment %d in %s", content, commentID, r)
	known := false
	for _, k := range reactions {
		known = known || k == content
	}
	if !known {
		return fmt.Errorf("%s: GitHub has no such reaction: use one of %s", op, strings.Join(reactions, ", "))
	}
	return c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Reactions.CreateIssueCommentReaction(ctx, r.Owner, r.Name, commentID, content)
		return resp, err
	})
}
