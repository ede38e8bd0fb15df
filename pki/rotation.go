package pki

import (
	"fmt"
	"path"
	"time"
)

// RotationPhase is one phase of a CA rotation.
type RotationPhase string

// The phases, in order.
const (
	PhasePublish RotationPhase = "publish" // 1: the bundle holds old and new; leaves unchanged
	PhaseReissue RotationPhase = "reissue" // 2: every leaf signed by the new CA; the bundle holds both
	PhaseDrop    RotationPhase = "drop"    // 3: the bundle holds the new CA alone; the old key is deleted
)

// Number is the phase's place in the rotation, 1 to 3; 0 for an unknown phase.
func (p RotationPhase) Number() int {
	switch p {
	case PhasePublish:
		return 1
	case PhaseReissue:
		return 2
	case PhaseDrop:
		return 3
	}
	return 0
}

// String is "phase 1 of 3 (publish)".
func (p RotationPhase) String() string {
	return fmt.Sprintf("phase %d of 3 (%s)", p.Number(), string(p))
}

// ParseRotationPhase reads a phase by name (publish, reissue, drop) or number (1–3).
func ParseRotationPhase(s string) (RotationPhase, error) {
	for _, p := range []RotationPhase{PhasePublish, PhaseReissue, PhaseDrop} {
		if s == string(p) || s == fmt.Sprint(p.Number()) {
			return p, nil
		}
	}
	return "", fmt.Errorf("rotation phase %q; want publish (1), reissue (2) or drop (3)", s)
}

// Rotation is where the rotation of one CA stands: the marker file
// ca/<stem>.rotation. It exists from phase 1 until phase 3 deletes it.
type Rotation struct {
	CA          string        `json:"ca"`            // ca, etcd-ca, front-proxy-ca or k8s
	Phase       RotationPhase `json:"phase"`         // the last phase applied
	Started     time.Time     `json:"started"`       // when phase 1 was applied
	Updated     time.Time     `json:"updated"`       // when the last phase was applied
	OldSerial   string        `json:"old_serial"`    // hex, as ObservedCert.Serial: the first CA of the bundle
	NewSerial   string        `json:"new_serial"`    // the second
	NewNotAfter time.Time     `json:"new_not_after"` // the new CA's expiry
}

// Next says what the rotation's next phase is and when it may run.
func (r Rotation) Next() string {
	switch r.Phase {
	case PhasePublish:
		return "next: " + PhaseReissue.String() + ", once every host has rolled the commit of phase 1"
	case PhaseReissue:
		return "next: " + PhaseDrop.String() + ", once every host has rolled the commit of phase 2"
	}
	return "the rotation is complete"
}

// String is one line: where the rotation stands and what comes next.
func (r Rotation) String() string {
	return fmt.Sprintf("%s: rotation at %s, applied %s (started %s; old serial %s, new serial %s); %s",
		r.CA, r.Phase, r.Updated.UTC().Format(time.DateTime+" MST"), r.Started.UTC().Format(time.DateOnly),
		ShortSerial(r.OldSerial), ShortSerial(r.NewSerial), r.Next())
}

func ShortSerial(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// RotationPath is the marker of CA ca's rotation, relative to pki.dir.
func RotationPath(ca string) string { return path.Join(CADirName, CADir(ca)+".rotation") }

// NextKeyPath is where the new key of CA ca waits during a rotation.
func NextKeyPath(ca string) string { return path.Join(CADirName, CADir(ca)+".next.key.age") }

func CACertPath(ca string) string { return path.Join(CADirName, CADir(ca)+".crt") }

// KubeadmCAs are the kubeadm layout's CAs; CAIDs every CA of the layouts.
func KubeadmCAs() []string { return []string{CA, EtcdCA, FrontProxyCA} }

func CAIDs() []string { return append(KubeadmCAs(), K8sCA) }
