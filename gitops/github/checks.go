package github

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	gogithub "github.com/google/go-github/v93/github"

	"github.com/ducksnest/nestbot/internal/textcut"
)

// CheckName is the name of nestbot's plan check run, the default of
// CheckRun.Name.
const CheckName = "nest/plan"

// Limits of a check run's output, from GitHub's documentation.
const (
	maxCheckText         = 65535 // characters of summary and of text
	maxAnnotationsPerReq = 50
	maxAnnotationMessage = 64 * 1024 // bytes
	maxCheckTitle        = 1000
)

// Annotation marks lines of a file in a check run: an error of nest.yaml at
// its line.
type Annotation struct {
	Path                   string // relative to the repository root
	StartLine, EndLine     int    // EndLine 0: StartLine
	StartColumn, EndColumn int    // only when the annotation is on one line
	Level                  string // "notice", "warning" or "failure"
	Message, Title         string
}

// CheckRun is a check run as nestbot writes it.
type CheckRun struct {
	Name       string // default CheckName
	HeadSHA    string // the commit checked; needed to create
	Status     string // "queued", "in_progress" or "completed"
	Conclusion string // with completed: "success", "neutral", "failure", "cancelled", "skipped", "timed_out", "action_required"
	Title      string
	Summary    string // Markdown; cut to GitHub's 65,535 characters
	Text       string // Markdown; cut likewise
	// Annotations beyond the first 50 go in follow-up updates of 50 each,
	// as GitHub takes at most 50 per request.
	Annotations []Annotation
	DetailsURL  string
	ExternalID  string
}

// CreateCheckRun creates a check run on cr.HeadSHA and returns its id.
// Created completed (with its conclusion) and with at most 50 annotations,
// it is one request.
func (c *Client) CreateCheckRun(ctx context.Context, r Repo, cr CheckRun) (int64, error) {
	if cr.Name == "" {
		cr.Name = CheckName
	}
	op := fmt.Sprintf("github: create check run %s on %s at %s", cr.Name, r, short(cr.HeadSHA))
	if cr.HeadSHA == "" {
		return 0, fmt.Errorf("%s: no head commit: give the commit the check is about", op)
	}
	anns, err := checkRunInput(&cr)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	first, rest := splitAnnotations(anns)
	body := gogithub.CreateCheckRunOptions{
		Name:       cr.Name,
		HeadSHA:    cr.HeadSHA,
		DetailsURL: optional(cr.DetailsURL),
		ExternalID: optional(cr.ExternalID),
		Status:     optional(cr.Status),
		Conclusion: optional(cr.Conclusion),
		Output:     output(cr, first),
	}
	if cr.Conclusion != "" {
		body.CompletedAt = &gogithub.Timestamp{Time: time.Now().UTC().Truncate(time.Second)}
	}
	var run *gogithub.CheckRun
	err = c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		var resp *gogithub.Response
		var err error
		run, resp, err = c.gh.Checks.CreateCheckRun(ctx, r.Owner, r.Name, body)
		return resp, err
	})
	if err != nil {
		return 0, err
	}
	id := run.GetID()
	if err := c.moreAnnotations(ctx, op, r, id, cr, rest); err != nil {
		return id, err
	}
	return id, nil
}

// UpdateCheckRun changes check run id: its status, conclusion and output.
// Annotations are added to those the run has (GitHub keeps them), 50 per
// request.
func (c *Client) UpdateCheckRun(ctx context.Context, r Repo, id int64, cr CheckRun) error {
	if cr.Name == "" {
		cr.Name = CheckName
	}
	op := fmt.Sprintf("github: update check run %s (%d) on %s", cr.Name, id, r)
	anns, err := checkRunInput(&cr)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	first, rest := splitAnnotations(anns)
	body := gogithub.UpdateCheckRunOptions{
		Name:       cr.Name,
		DetailsURL: optional(cr.DetailsURL),
		ExternalID: optional(cr.ExternalID),
		Status:     optional(cr.Status),
		Conclusion: optional(cr.Conclusion),
		Output:     output(cr, first),
	}
	if cr.Conclusion != "" {
		body.CompletedAt = &gogithub.Timestamp{Time: time.Now().UTC().Truncate(time.Second)}
	}
	err = c.do(ctx, op, true, func(ctx context.Context) (*gogithub.Response, error) {
		_, resp, err := c.gh.Checks.UpdateCheckRun(ctx, r.Owner, r.Name, id, body)
		return resp, err
	})
	if err != nil {
		return err
	}
	return c.moreAnnotations(ctx, op, r, id, cr, rest)
}

// moreAnnotations sends the annotations beyond the first request's, 50 at
// a time, with the run's output (GitHub needs its title and summary with
// every output).
func (c *Client) moreAnnotations(ctx context.Context, op string, r Repo, id int64, cr CheckRun, rest []*gogithub.CheckRunAnnotation) error {
	for sent := 0; len(rest) > 0; {
		n := min(len(rest), maxAnnotationsPerReq)
		batch := rest[:n]
		rest = rest[n:]
		body := gogithub.UpdateCheckRunOptions{Name: cr.Name, Output: output(cr, batch)}
		err := c.do(ctx, fmt.Sprintf("%s: annotations %d to %d", op, maxAnnotationsPerReq+sent+1, maxAnnotationsPerReq+sent+n), true,
			func(ctx context.Context) (*gogithub.Response, error) {
				_, resp, err := c.gh.Checks.UpdateCheckRun(ctx, r.Owner, r.Name, id, body)
				return resp, err
			})
		if err != nil {
			return err
		}
		sent += n
	}
	return nil
}

// checkRunInput checks cr, cuts its texts to GitHub's limits and returns
// its annotations as GitHub takes them.
func checkRunInput(cr *CheckRun) ([]*gogithub.CheckRunAnnotation, error) {
	switch cr.Status {
	case "", "queued", "in_progress", "completed":
	default:
		return nil, fmt.Errorf("status %q is not one of queued, in_progress, completed", cr.Status)
	}
	switch cr.Conclusion {
	case "":
		if cr.Status == "completed" {
			return nil, fmt.Errorf("a completed check run needs a conclusion (success, neutral, failure, ...)")
		}
	case "success", "neutral", "failure", "cancelled", "skipped", "timed_out", "action_required":
		if cr.Status != "" && cr.Status != "completed" {
			return nil, fmt.Errorf("status %q with conclusion %q: a conclusion completes the run; set status completed or leave it empty", cr.Status, cr.Conclusion)
		}
	default:
		return nil, fmt.Errorf("conclusion %q is not one of success, neutral, failure, cancelled, skipped, timed_out, action_required", cr.Conclusion)
	}
	if (cr.Summary != "" || len(cr.Annotations) > 0 || cr.Text != "") && cr.Title == "" {
		cr.Title = cr.Name
	}
	if cr.Title != "" && cr.Summary == "" {
		cr.Summary = cr.Title
	}
	cr.Title = cut(cr.Title, maxCheckTitle)
	cr.Summary = cut(cr.Summary, maxCheckText)
	cr.Text = cut(cr.Text, maxCheckText)
	anns := make([]*gogithub.CheckRunAnnotation, 0, len(cr.Annotations))
	for i, a := range cr.Annotations {
		ga, err := annotation(a)
		if err != nil {
			return nil, fmt.Errorf("annotation %d: %w", i+1, err)
		}
		anns = append(anns, ga)
	}
	return anns, nil
}

func annotation(a Annotation) (*gogithub.CheckRunAnnotation, error) {
	if a.Path == "" {
		return nil, fmt.Errorf("no path: give the file, relative to the repository root")
	}
	if a.Message == "" {
		return nil, fmt.Errorf("no message at %s:%d", a.Path, a.StartLine)
	}
	switch a.Level {
	case "notice", "warning", "failure":
	case "":
		a.Level = "failure"
	default:
		return nil, fmt.Errorf("level %q at %s:%d is not one of notice, warning, failure", a.Level, a.Path, a.StartLine)
	}
	start := max(a.StartLine, 1) // an error without a line marks the first
	end := max(a.EndLine, start)
	ga := &gogithub.CheckRunAnnotation{
		Path:            new(a.Path),
		StartLine:       new(start),
		EndLine:         new(end),
		AnnotationLevel: new(a.Level),
		Message:         new(textcut.Limit(a.Message, maxAnnotationMessage, " ... (cut)")),
		Title:           optional(cut(a.Title, 255)),
	}
	// GitHub takes columns only on an annotation of one line.
	if start == end && a.StartColumn > 0 {
		ga.StartColumn = new(a.StartColumn)
		ga.EndColumn = new(max(a.EndColumn, a.StartColumn))
	}
	return ga, nil
}

func splitAnnotations(anns []*gogithub.CheckRunAnnotation) (first, rest []*gogithub.CheckRunAnnotation) {
	n := min(len(anns), maxAnnotationsPerReq)
	return anns[:n], anns[n:]
}

// output is the run's output with annots, or nil when it has none.
func output(cr CheckRun, annots []*gogithub.CheckRunAnnotation) *gogithub.CheckRunOutput {
	if cr.Title == "" {
		return nil
	}
	return &gogithub.CheckRunOutput{
		Title:       new(cr.Title),
		Summary:     new(cr.Summary),
		Text:        optional(cr.Text),
		Annotations: annots,
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// cut bounds s to limit characters, saying so at its end.
func cut(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	const more = "\n\n... (cut to fit GitHub's limit)"
	keep := limit - utf8.RuneCountInString(more)
	i := 0
	for n := 0; n < keep; n++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return strings.TrimRight(s[:i], " \n") + more
}
