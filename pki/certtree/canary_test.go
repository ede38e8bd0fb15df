package certtree

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/pki"
)

// Nothing an apply prints, logs, reports or returns as an error holds a
// private key: not the keys it issues, not the bot's identity, not a host's.
func TestCanaryNoPrivateKeyIsEverPrinted(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	var printed bytes.Buffer
	fx.applier.Logger = slog.New(slog.NewJSONHandler(&printed, &slog.HandlerOptions{Level: slog.LevelDebug}))
	secrets := []string{strings.TrimPrefix(fx.botSecret, "AGE-SECRET-KEY-")}
	for _, h := range fx.hosts {
		secrets = append(secrets, pemBodyLines(h.private)...)
	}
	secrets = append(secrets, pemBodyLines(fx.adminSSH.private)...)
	collectKeys := func() {
		for p, data := range fx.snapshot(t) {
			if pki.IsAgeFile(p) {
				secrets = append(secrets, pemBodyLines(decryptWith(t, fx.bot, data))...)
			}
		}
	}
	record := func(rep *pki.Report, err error) {
		if err != nil {
			fmt.Fprintf(&printed, "error: %v\n%+v\n", err, err)
		}
		if rep != nil {
			j, _ := json.Marshal(rep)
			fmt.Fprintf(&printed, "%s\n%+v\n%s\n%s\n", j, rep, rep.CommitMessage(), rep.Summary())
		}
	}
	apply := func() {
		rep, err := fx.applier.Apply(context.Background(), fx.specs())
		record(rep, err)
		collectKeys()
	}

	apply()                        // issue everything
	fx.hosts["w-1"] = newSSHKey(t) // rekey
	fx.hostKeys["w-1"] = fx.hosts["w-1"].pub
	secrets = append(secrets, pemBodyLines(fx.hosts["w-1"].private)...)
	apply()
	fx.clock = t0.Add(80 * 24 * time.Hour) // renew
	apply()
	fx.fleet.PKI.ExtraSANs = []string{"api.example"} // reissue
	apply()
	for _, phase := range []pki.RotationPhase{pki.PhasePublish, pki.PhaseReissue, pki.PhaseDrop} { // rotate a CA
		record(fx.applier.RotateCA(context.Background(), fx.specs(), pki.CA, phase, true))
		collectKeys()
	}

	// Failures: a stranger's identity, a private key given as a recipient.
	bot := fx.applier.Identity
	fx.applier.Identity, _, _ = newAgeIdentity(t)
	fx.clock = t0.Add(160 * 24 * time.Hour)
	record(fx.applier.Apply(context.Background(), fx.specs()))
	fx.applier.Identity = bot
	fx.hostKeys["w-1"] = fx.botSecret
	record(fx.applier.Apply(context.Background(), fx.specs()))
	fmt.Fprintf(&printed, "%v %+v %#v\n", fx.bot, fx.bot, *fx.bot)

	out := printed.String()
	if !strings.Contains(out, `"action":"rekeyed"`) || !strings.Contains(out, `"action":"rotated"`) || !strings.Contains(out, "error: ") {
		t.Fatalf("the canary did not see the apply run:\n%s", out)
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("printed a PEM private key header")
	}
	if len(secrets) < 40 {
		t.Fatalf("only %d secret lines collected", len(secrets))
	}
	// Any 24 characters in a row of a secret line hold one of its 16-character
	// pieces at a multiple of 8.
	for _, s := range secrets {
		for off := 0; off+16 <= len(s); off += 8 {
			if strings.Contains(out, s[off:off+16]) {
				t.Errorf("printed secret material (a line beginning %q…)", s[:6])
				break
			}
		}
	}
}

// pemBodyLines are the base64 lines of a PEM file, long enough to be unique.
func pemBodyLines(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}
