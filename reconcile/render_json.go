package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// jsonPlan is the JSON plan, format FormatVersion. Its fields are written in
// this order; every field is always present but warnings (only when there
// are any), and steps, changes and notes are lists, empty rather than null.
type jsonPlan struct {
	FormatVersion string     `json:"format_version"`
	Fleet         string     `json:"fleet"`
	Revision      string     `json:"revision"`
	ObservedAt    *time.Time `json:"observed_at"` // null when unknown
	Summary       Summary    `json:"summary"`
	HasChanges    bool       `json:"has_changes"`
	Steps         []jsonStep `json:"steps"`
	Notes         []string   `json:"notes"`
	Warnings      []string   `json:"warnings,omitempty"`
}

type jsonStep struct {
	Plane   Plane        `json:"plane"`
	Action  Action       `json:"action"`
	Address string       `json:"address"`
	ID      string       `json:"id"` // the live resource a cloud step acts on
	Reason  string       `json:"reason"`
	Batch   int          `json:"batch,omitempty"` // a roll's batch, from 1
	Changes []jsonChange `json:"changes"`
}

// jsonChange omits a value that is not there; a sensitive change never has one.
type jsonChange struct {
	Attr              string `json:"attr"`
	Before            string `json:"before,omitempty"`
	After             string `json:"after,omitempty"`
	Sensitive         bool   `json:"sensitive"`
	ForcesReplacement bool   `json:"forces_replacement"`
}

// RenderJSON writes the plan as indented JSON for programs: a stable shape,
// versioned by format_version, with the summary counts and has_changes
// computed. Sensitive changes carry no values.
func RenderJSON(w io.Writer, p *Plan) error {
	out := jsonPlanOf(p)
	if !out.validUTF8() {
		// encoding/json writes each byte that is not UTF-8 as \ufffd,
		// which jsonOutput cannot.
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("render JSON plan: %w", err)
		}
		return nil
	}
	// encoding/json's output, as its Encoder with SetIndent("", "  ") and
	// SetEscapeHTML(false) writes it, written in one pass: encoding/json
	// marshals the whole plan, then indents it into a second buffer.
	if err := jsonv2.MarshalWrite(w, out, jsonOutput); err != nil {
		return fmt.Errorf("render JSON plan: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("render JSON plan: %w", err)
	}
	return nil
}

// validUTF8 reports whether every string of the plan is UTF-8.
func (p *jsonPlan) validUTF8() bool {
	ok := utf8.ValidString(p.Fleet) && utf8.ValidString(p.Revision)
	for _, n := range p.Notes {
		ok = ok && utf8.ValidString(n)
	}
	for _, s := range p.Steps {
		ok = ok && utf8.ValidString(string(s.Plane)) && utf8.ValidString(string(s.Action)) && utf8.ValidString(s.Address) &&
			utf8.ValidString(s.ID) && utf8.ValidString(s.Reason)
		for _, c := range s.Changes {
			ok = ok && utf8.ValidString(c.Attr) && utf8.ValidString(c.Before) && utf8.ValidString(c.After)
		}
	}
	return ok
}

// jsonOutput writes as encoding/json does, indented by two spaces, without
// escaping <, > and &.
var jsonOutput = jsonv2.JoinOptions(jsonv1.DefaultOptionsV1(), jsontext.WithIndent("  "), jsontext.EscapeForHTML(false))

// jsonPlanOf is the JSON plan of p.
func jsonPlanOf(p *Plan) jsonPlan {
	if p == nil {
		p = &Plan{}
	}
	out := jsonPlan{
		FormatVersion: FormatVersion,
		Fleet:         p.Fleet,
		Revision:      p.Revision,
		Summary:       p.Summary(),
		HasChanges:    p.HasChanges(),
		Steps:         make([]jsonStep, 0, len(p.Steps)),
		Notes:         append([]string{}, p.Notes...),
		Warnings:      p.Warnings,
	}
	if !p.ObservedAt.IsZero() {
		t := p.ObservedAt.UTC()
		out.ObservedAt = &t
	}
	for _, st := range p.Steps {
		js := jsonStep{Plane: st.Plane, Action: st.Action, Address: st.Address.String(), ID: st.ID, Reason: st.Reason,
			Batch: st.Batch, Changes: make([]jsonChange, 0, len(st.Changes))}
		for _, c := range st.Changes {
			jc := jsonChange{Attr: c.Attr, Sensitive: c.Sensitive, ForcesReplacement: c.ForcesReplace}
			if !c.Sensitive {
				jc.Before, jc.After = c.Before, c.After
			}
			js.Changes = append(js.Changes, jc)
		}
		out.Steps = append(out.Steps, js)
	}
	return out
}
