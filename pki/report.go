package pki

import (
	"fmt"
	"strings"
	"time"
)

// Action is what an apply did to one certificate or key.
type Action string

// The actions, in the order a summary lists them.
const (
	Issued    Action = "issued"    // it was missing
	Reissued  Action = "reissued"  // subject, SANs or usages drifted, its CA is new, or its files were unusable
	Renewed   Action = "renewed"   // due by renew_before or past 2/3 of its lifetime
	Rekeyed   Action = "rekeyed"   // the same key, re-encrypted to changed recipients
	Deleted   Action = "deleted"   // no host needs it any more
	Rotated   Action = "rotated"   // a CA rotation moved on by one phase (RotateCA)
	Held      Action = "held"      // due or drifted, but a CA moves only through rotate-ca
	Unchanged Action = "unchanged" // nothing to do
)

func actionOrder() []Action {
	return []Action{Rotated, Issued, Reissued, Renewed, Rekeyed, Deleted, Held, Unchanged}
}

// verb is the imperative of a, for commit subjects.
func (a Action) verb() string {
	switch a {
	case Issued:
		return "issue"
	case Reissued:
		return "reissue"
	case Renewed:
		return "renew"
	case Rekeyed:
		return "rekey"
	case Deleted:
		return "delete"
	case Held:
		return "hold"
	case Rotated:
		return "rotate"
	}
	return "keep"
}

// Result is what happened to one Spec (or one stale certificate).
type Result struct {
	ID     string   `json:"id"`
	Action Action   `json:"action"`
	Reason string   `json:"reason,omitempty"`
	Files  []string `json:"files,omitempty"` // written or removed, relative to pki.dir
	// NotAfter is the certificate's expiry after the apply.
	NotAfter time.Time `json:"not_after,omitzero"`
}

// Report is what an apply did, one Result per certificate, sorted by ID.
type Report struct {
	Results []Result `json:"results"`
	// Written and Removed are every file changed, secrets.nix included, sorted.
	Written []string `json:"written,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Warnings are things the next apply will trip over.
	Warnings []string `json:"warnings,omitempty"`
	// Rotation is the phase of a CA rotation this report applied (RotateCA).
	Rotation *Rotation `json:"rotation,omitempty"`
}

// Count is how many results have action a.
func (r *Report) Count(a Action) int {
	n := 0
	for _, res := range r.Results {
		if res.Action == a {
			n++
		}
	}
	return n
}

// Changed reports whether the apply changed any file.
func (r *Report) Changed() bool { return len(r.Written)+len(r.Removed) > 0 }

// Summary is a one-line account of the changes: "renew 3 certificates,
// rekey 1"; "rotate ca, phase 2 of 3 (reissue), reissue 11 certificates"
// for a rotation; "no changes" when there are none.
func (r *Report) Summary() string {
	var parts []string
	if r.Rotation != nil {
		parts = append(parts, fmt.Sprintf("rotate %s, %s", r.Rotation.CA, r.Rotation.Phase))
	}
	for _, a := range actionOrder() {
		if a == Unchanged || a == Held || a == Rotated {
			continue
		}
		n := r.Count(a)
		if n == 0 {
			continue
		}
		if len(parts) == 0 || (r.Rotation != nil && len(parts) == 1) {
			noun := "certificates"
			if n == 1 {
				noun = "certificate"
			}
			parts = append(parts, fmt.Sprintf("%s %d %s", a.verb(), n, noun))
		} else {
			parts = append(parts, fmt.Sprintf("%s %d", a.verb(), n))
		}
	}
	if len(parts) == 0 {
		if r.Changed() {
			return "update secrets.nix"
		}
		return "no changes"
	}
	return strings.Join(parts, ", ")
}

// CommitMessage is the message of the commit that records the apply: the
// summary as subject, then one line per changed or held certificate.
func (r *Report) CommitMessage() string {
	var b strings.Builder
	b.WriteString("nest: " + r.Summary() + "\n")
	first := true
	for _, a := range actionOrder() {
		if a == Unchanged {
			continue
		}
		for _, res := range r.Results {
			if res.Action != a {
				continue
			}
			if first {
				b.WriteString("\n")
				first = false
			}
			fmt.Fprintf(&b, "- %s %s", res.Action, res.ID)
			if res.Reason != "" {
				b.WriteString(": " + res.Reason)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
