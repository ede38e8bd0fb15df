package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
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
		js := jsonStep{Plane: st.Plane, Action: st.Action, Address: st.Address, ID: st.ID, Reason: st.Reason,
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
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("render JSON plan: %w", err)
	}
	return nil
}
