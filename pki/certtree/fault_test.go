package certtree

import (
	"context"
	"crypto/x509"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/internal/fixtures"
	"github.com/ducksnest/nestbot/pki"
)

// treeState is the certificate tree as one commit left it: what a host
// holds once it has rolled that commit.
type treeState struct {
	name string // "issue", "ca publish", …
	dir  string
	at   time.Time // the clock when it was written
}

// chainCheck verifies leaves against trust bundles, with openssl verify and
// crypto/x509, and counts.
type chainCheck struct {
	t       *testing.T
	openssl string
	chains  int      // leaf-against-bundle verifications done
	fails   []string // those that did not verify, or on which the two disagreed
}

// verify checks every leaf of tree leaves against the bundle of its signing
// CA in tree bundles, at time at: the chains of a host holding those leaves
// and a peer holding those bundles. It returns how many did not verify.
func (c *chainCheck) verify(leaves, bundles treeState, at time.Time) int {
	c.t.Helper()
	bad := 0
	for _, ca := range pki.KubeadmCAs() {
		bundle := filepath.Join(bundles.dir, filepath.FromSlash(pki.CACertPath(ca)))
		pool := x509.NewCertPool()
		for _, cert := range readCerts(c.t, bundle) {
			pool.AddCert(cert)
		}
		files := leafFiles(c.t, leaves.dir, ca)
		args := append([]string{"verify", "-x509_strict", "-attime", fmt.Sprint(at.Unix()), "-CAfile", bundle}, files...)
		out, _ := exec.Command(c.openssl, args...).CombinedOutput()
		okLines := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if f, ok := strings.CutSuffix(line, ": OK"); ok {
				okLines[f] = true
			}
		}
		for _, f := range files {
			c.chains++
			_, err := readCerts(c.t, f)[0].Verify(x509.VerifyOptions{Roots: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			sslOK, goOK := okLines[f], err == nil
			if sslOK && goOK {
				continue
			}
			bad++
			rel, _ := filepath.Rel(leaves.dir, f)
			c.fails = append(c.fails, fmt.Sprintf("%s from %q against %s from %q: openssl %v, crypto/x509 %v (%v)",
				rel, leaves.name, pki.CACertPath(ca), bundles.name, sslOK, goOK, err))
			if sslOK != goOK {
				c.t.Errorf("openssl and crypto/x509 disagree on %s from %q against %q:\n%s", rel, leaves.name, bundles.name, out)
			}
		}
	}
	return bad
}

// TestFaultCARotation takes the certificate set of a small fleet through
// issue, then a full rotation (publish, reissue, drop) of each of the three
// CAs in turn, and after every phase verifies every leaf chain, with openssl
// verify, against the trust bundle a host would hold at that moment. Hosts
// roll a phase one at a time, so the hosts that have rolled it and those
// that have not yet must accept each other: a new bundle with old leaves,
// and an old bundle with new leaves. None may fail. Skipping a phase, which
// the order refuses, is shown to break chains, so the check can fail.
func TestFaultCARotation(t *testing.T) {
	t.Parallel()
	openssl := fixtures.Require(t, "openssl")
	fx := newFixture(t)
	ctx := context.Background()

	fx.apply(t)
	states := []treeState{{name: "issue", dir: copyTree(t, fx.dir), at: fx.clock}}
	for _, ca := range pki.KubeadmCAs() {
		for _, phase := range []pki.RotationPhase{pki.PhasePublish, pki.PhaseReissue, pki.PhaseDrop} {
			fx.clock = fx.clock.Add(24 * time.Hour)
			if _, err := fx.applier.RotateCA(ctx, fx.specs(), ca, phase, true); err != nil {
				t.Fatalf("rotate %s %s: %v", ca, phase, err)
			}
			states = append(states, treeState{name: ca + " " + string(phase), dir: copyTree(t, fx.dir), at: fx.clock})
		}
	}

	c := &chainCheck{t: t, openssl: openssl}
	cross := 0
	c.verify(states[0], states[0], states[0].at)
	for i := 1; i < len(states); i++ {
		before, after := states[i-1], states[i]
		// While the phase rolls, a host that has rolled it beside one that
		// has not, either way round; then every host on it.
		if c.verify(before, after, after.at) == 0 {
			cross++ // new bundle, old leaves
		}
		if c.verify(after, before, after.at) == 0 {
			cross++ // old bundle, new leaves
		}
		c.verify(after, after, after.at)
	}
	for _, f := range c.fails {
		t.Errorf("chain does not verify: %s", f)
	}

	// Skipping a phase breaks chains: a leaf reissued by a new CA against
	// the bundle from before its publish, and a leaf of the old CA against
	// the bundle after its drop. The check above would have seen it.
	skipped := &chainCheck{t: t, openssl: openssl}
	for i, ca := range pki.KubeadmCAs() {
		published, reissued, dropped := states[3*i+1], states[3*i+2], states[3*i+3]
		beforePublish := states[3*i]
		if skipped.verify(reissued, beforePublish, reissued.at) == 0 {
			t.Errorf("%s: leaves reissued by the new CA verify against the bundle from before it was published", ca)
		}
		if skipped.verify(published, dropped, dropped.at) == 0 {
			t.Errorf("%s: leaves of the old CA verify against the bundle after it was dropped", ca)
		}
	}

	t.Logf("FIGURE: pki phases: %d (issue, then publish, reissue, drop for each of %d CAs)", len(states), len(pki.KubeadmCAs()))
	t.Logf("FIGURE: pki chains verified: %d (%d cross-phase pairs of leaves and bundles, all verifying)", c.chains, cross)
	t.Logf("FIGURE: pki chain failures: %d", len(c.fails))
	t.Logf("FIGURE: pki chains broken by skipping a phase: %d of %d (the check can fail)", len(skipped.fails), skipped.chains)
}
