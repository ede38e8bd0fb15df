package certtree

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/ducksnest/nestbot/pki"
)

// issuing is the in-memory work of one apply: issuing and encrypting.
type issuing struct {
	issuer     *pki.Issuer
	recipients map[string]age.Recipient // every recipient of the set, parsed once; read only
	signers    map[string]*pki.KeyPair  // CA id → its key pair, as the CAs are issued or decrypted
	parallel   int

	// staging, when the tree can stage, gets each task's files as soon as
	// it is done, 8 at a time, while the others are issued.
	staging    Staging
	stages     sync.WaitGroup
	stageSlots chan struct{}
	stageMu    sync.Mutex
	stageErrs  []error
}

// stage adds t's files to the staging, in the background.
func (w *issuing) stage(t *task) {
	if w.staging == nil {
		return
	}
	w.stageMu.Lock()
	if w.stageSlots == nil {
		w.stageSlots = make(chan struct{}, 8) // file system work, as inParallel
	}
	w.stageMu.Unlock()
	for _, fw := range t.writes {
		w.stages.Go(func() {
			w.stageSlots <- struct{}{}
			defer func() { <-w.stageSlots }()
			if err := w.staging.Add(fw.path, fw.data); err != nil {
				w.stageMu.Lock()
				w.stageErrs = append(w.stageErrs, err)
				w.stageMu.Unlock()
			}
		})
	}
}

// staged waits for every file staged and returns what failed.
func (w *issuing) staged() error {
	w.stages.Wait()
	w.stageMu.Lock()
	defer w.stageMu.Unlock()
	slices.SortFunc(w.stageErrs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(w.stageErrs...)
}

// run issues and encrypts: new CAs first, then everything else at once.
func (w *issuing) run(ctx context.Context, tasks []*task) error {
	var first, rest []*task
	for _, t := range tasks {
		if t.spec.IsCA && t.action == pki.Issued {
			first = append(first, t)
		} else {
			rest = append(rest, t)
		}
	}
	if err := w.runAll(ctx, first); err != nil {
		return err
	}
	for _, t := range first {
		w.signers[t.spec.ID] = t.issued
	}
	return w.runAll(ctx, rest)
}

func (w *issuing) runAll(ctx context.Context, tasks []*task) error {
	n := w.parallel
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(tasks))
	sem := make(chan struct{}, n)
	for i, t := range tasks {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = w.exec(t); errs[i] == nil {
				w.stage(t)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// exec does one task's work in memory.
func (w *issuing) exec(t *task) error {
	s := t.spec
	if t.have != nil {
		t.notAfter = t.have.NotAfter
	}
	switch t.action {
	case pki.Rekeyed:
		defer func() { clear(t.nextKeyPEM); t.nextKeyPEM = nil }()
		enc, err := w.encrypt(t.keyPEM, s.Recipients)
		clear(t.keyPEM)
		t.keyPEM = nil
		if err != nil {
			return fmt.Errorf("rekey %s: %w", s.KeyPath, err)
		}
		t.writes = []fileWrite{{s.KeyPath, enc}}
		if t.nextKeyPEM != nil {
			enc, err := w.encrypt(t.nextKeyPEM, s.Recipients)
			if err != nil {
				return fmt.Errorf("rekey %s: %w", t.nextKeyPath, err)
			}
			t.writes = append(t.writes, fileWrite{t.nextKeyPath, enc})
		}
		return nil
	case pki.Issued, pki.Reissued, pki.Renewed:
	default:
		return nil
	}
	var signer *pki.KeyPair
	if s.Signer != "" {
		if signer = w.signers[s.Signer]; signer == nil {
			return fmt.Errorf("issue %s: its CA %s cannot sign in this apply", s.ID, s.Signer)
		}
	}
	kp, err := w.issuer.Issue(s, signer)
	if err != nil {
		return err
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return fmt.Errorf("issue %s: %w", s.ID, err)
	}
	enc, err := w.encrypt(keyPEM, s.Recipients)
	clear(keyPEM)
	if err != nil {
		return fmt.Errorf("issue %s: %s: %w", s.ID, s.KeyPath, err)
	}
	t.writes = []fileWrite{{s.KeyPath, enc}}
	if s.KeyOnly {
		pub, err := kp.PublicKeyPEM()
		if err != nil {
			return fmt.Errorf("issue %s: %w", s.ID, err)
		}
		t.writes = append(t.writes, fileWrite{pki.PublicKeyPath(s), pub})
	} else {
		t.writes = append(t.writes, fileWrite{s.CertPath, kp.CertPEM})
		t.notAfter = kp.Cert.NotAfter
	}
	t.issued = kp
	return nil
}

func (w *issuing) encrypt(plaintext []byte, recipients []string) ([]byte, error) {
	rs, err := parseRecipients(recipients, w.recipients)
	if err != nil {
		return nil, err
	}
	return encrypt(plaintext, rs)
}
