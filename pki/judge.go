package pki

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Verdict is what one certificate of the set needs: the one decision that
// a plan shows and an apply carries out, so that the two never disagree.
type Verdict struct {
	Action Action
	Reason string
	// Drift lists the attributes (Drift's names) that make it a reissue.
	Drift []string
	// Unknown are the stanzas of its key's age header no recipient of the
	// set accounts for (KeyRecipients.Differ): a new or rekeyed key is no
	// longer encrypted to them, and Reason says so.
	Unknown []string
}

// Judge decides what Spec s needs, given what the tree holds of it (nil
// when missing); signerIsNew says whether its CA is issued in the same
// apply. A leaf is issued, reissued (unreadable, its key missing, its CA
// new, drifted), renewed (RenewalDue) or rekeyed (its recipients changed).
// A CA is only ever issued (missing) or rekeyed here: when it drifted or is
// due it is Held, since replacing a CA breaks every chain the hosts hold;
// nestbot certs rotate-ca replaces it in phases.
//
// What only an apply can tell — that a key does not match its certificate,
// that a leaf is not signed by its CA's current key — the applier adds.
func Judge(s Spec, have *ObservedCert, signerIsNew bool, now time.Time, renewBefore time.Duration) Verdict {
	if s.IsCA {
		return judgeCA(s, have, now, renewBefore)
	}
	var v Verdict
	switch {
	case have == nil:
		v.Action, v.Reason = Issued, "missing"
		if s.Signer != "" && signerIsNew {
			v.Reason = "new " + s.Signer
		}
		return v
	case have.Error != "":
		v.Action, v.Reason = Reissued, "unreadable ("+have.Error+")"
	case s.Signer != "" && signerIsNew:
		v.Action, v.Reason = Reissued, "its CA "+s.Signer+" is new"
	case !have.HasKey:
		v.Action, v.Reason = Reissued, "its key "+s.KeyPath+" is missing"
	default:
		if v.Drift = Drift(s, have); len(v.Drift) > 0 {
			v.Action, v.Reason = Reissued, strings.Join(v.Drift, ", ")+" changed"
			break
		}
		if !s.KeyOnly {
			if due, why := RenewalDue(have.NotBefore, have.NotAfter, now, renewBefore); due {
				v.Action, v.Reason = Renewed, why
				break
			}
		}
		if differ, _ := have.Keys().Differ(s.Recipients); differ {
			v.Action, v.Reason = Rekeyed, "recipients changed; the key is re-encrypted, not reissued"
			break
		}
		v.Action = Unchanged
		return v
	}
	if have.HasKey && have.Error == "" {
		_, v.Unknown = have.Keys().Differ(s.Recipients)
		if w := unknownRecipients(v.Unknown); w != "" {
			v.Reason += "; " + w
		}
	}
	return v
}

// judgeCA: a missing CA is issued; an existing one is never replaced here.
// Drift, expiry or a missing key hold it for the phased rotation; its key
// is re-encrypted when its recipients changed.
func judgeCA(s Spec, have *ObservedCert, now time.Time, renewBefore time.Duration) Verdict {
	if have == nil {
		return Verdict{Action: Issued, Reason: "missing"}
	}
	var hold string
	var drift []string
	switch {
	case have.Error != "":
		hold = "unreadable (" + have.Error + ")"
	case !have.HasKey:
		hold = "its key " + s.KeyPath + " is missing"
	default:
		if drift = Drift(s, have); len(drift) > 0 {
			hold = strings.Join(drift, ", ") + " changed"
		} else if due, why := RenewalDue(have.NotBefore, have.NotAfter, now, renewBefore); due {
			hold = why
		}
	}
	if hold != "" {
		hold += "; a CA is replaced only in phases: nestbot certs rotate-ca --ca " + s.ID
	}
	if have.HasKey && have.Error == "" {
		if differ, unknown := have.Keys().Differ(s.Recipients); differ {
			reason := JoinReasons("recipients changed; the key is re-encrypted, not reissued", hold)
			if w := unknownRecipients(unknown); w != "" {
				reason += "; " + w
			}
			return Verdict{Action: Rekeyed, Reason: reason, Drift: drift, Unknown: unknown}
		}
	}
	if hold != "" {
		return Verdict{Action: Held, Reason: hold, Drift: drift}
	}
	return Verdict{Action: Unchanged}
}

// RemovalReason is how a plan and an apply word a removal: loudly for a
// certificate nestbot did not issue.
func RemovalReason(r Removal) string {
	if r.IssuedByNestbot {
		return r.Reason
	}
	what := "certificate"
	if r.IsCA {
		what = "CA"
	}
	return fmt.Sprintf("NOT ISSUED BY NESTBOT: a %s adopted from the tree, deleted because %s", what, r.Reason)
}

// RenewalDue is the renewal policy: due when less than renewBefore is left,
// or when more than 2/3 of the lifetime has passed. why says which.
func RenewalDue(notBefore, notAfter, now time.Time, renewBefore time.Duration) (due bool, why string) {
	left := notAfter.Sub(now)
	if left <= 0 {
		return true, "expired " + roughly(-left) + " ago"
	}
	if left < renewBefore {
		return true, "expires in " + roughly(left) + " (renew_before " + roughly(renewBefore) + ")"
	}
	if life := notAfter.Sub(notBefore); life > 0 && now.Sub(notBefore) > life*2/3 {
		return true, "past 2/3 of its lifetime (expires in " + roughly(left) + ")"
	}
	return false, ""
}

func roughly(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
	return d.Round(time.Second).String()
}

// Drift lists what a certificate says that its spec no longer does, by the
// attribute names the plan uses.
func Drift(s Spec, c *ObservedCert) []string {
	if s.KeyOnly {
		return nil
	}
	var out []string
	differs := func(attr string, have, want []string) {
		if !slices.Equal(SortedUnique(have), SortedUnique(want)) {
			out = append(out, attr)
		}
	}
	sans := differs
	if s.SANsIncomplete {
		sans = func(attr string, have, want []string) {
			if !SubsetOf(want, have) {
				out = append(out, attr)
			}
		}
	}
	if c.CommonName != s.CommonName {
		out = append(out, "common_name")
	}
	differs("organization", c.Organization, s.Organization)
	differs("usages", c.Usages, s.Usages)
	sans("dns_names", c.DNSNames, s.DNSNames)
	sans("ips", c.IPs, s.IPs)
	if c.IsCA != s.IsCA {
		out = append(out, "is_ca")
	}
	return out
}

// SubsetOf reports whether every element of want is in have.
func SubsetOf(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// SameRecipients reports whether have and want are the same recipients,
// normalized. Lists that are equal as they are, as after every apply, are
// not normalized (a plan compares every key's).
func SameRecipients(have, want []string) bool {
	return slices.Equal(have, want) || slices.Equal(NormalizeRecipients(have), NormalizeRecipients(want))
}

func JoinReasons(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; also " + b
}
