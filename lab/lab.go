// Package lab starts, in one process and only on loopback, stand-ins for
// everything nestbot talks to — today the EC2 endpoint — so that tests and
// `nestbot lab up` drive nestbot exactly as the real world would: through
// endpoints and credentials.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/ducksnest/nestbot/lab/ec2"
	"github.com/ducksnest/nestbot/nest"
)

// Options configure a lab.
type Options struct {
	// Fleet, when set, seeds the EC2 endpoint with what its nest.yaml
	// expects to exist already: the images it names and its instance profiles.
	Fleet *nest.Fleet
	Logf  func(format string, args ...any)
	// PendingDelay is how long a new instance stays pending (default 2s).
	PendingDelay time.Duration
}

// Lab is a running lab.
type Lab struct {
	EC2     *ec2.Server
	Region  string
	AuthKey string // a tailnet auth key for new hosts' user-data
}

// Up starts the lab.
func Up(o Options) (*Lab, error) {
	delay := o.PendingDelay
	if delay == 0 {
		delay = 2 * time.Second
	}
	srv := &ec2.Server{Logf: o.Logf, PendingDelay: delay, StoppingDelay: delay, ShuttingDownDelay: delay}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	l := &Lab{EC2: srv, Region: "ap-northeast-2"}
	if err := l.seed(o.Fleet); err != nil {
		srv.Close()
		return nil, err
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		srv.Close()
		return nil, err
	}
	l.AuthKey = "tskey-auth-lab" + hex.EncodeToString(b[:])
	return l, nil
}

// seed adds the images and instance profiles a fleet refers to, as an
// account that already has them would.
func (l *Lab) seed(f *nest.Fleet) error {
	images := map[string]bool{"NixOS-25.05-updated-kernel-image": true}
	profiles := map[string]bool{"ducksnest-controlplane": true}
	if f != nil && f.AWS != nil {
		l.Region = f.AWS.Region
		for _, h := range f.Hosts {
			if h.AWS == nil {
				continue
			}
			if h.AWS.AMI.Name != "" {
				images[h.AWS.AMI.Name] = true
			}
			if h.AWS.InstanceProfile != "" {
				profiles[h.AWS.InstanceProfile] = true
			}
		}
	}
	for _, name := range sortedKeys(images) {
		if _, err := l.EC2.SeedImage(ec2.Image{Name: labImageName(name), OwnerID: nest.NixOSAMIOwner,
			CreationDate: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Public: true}); err != nil {
			return fmt.Errorf("lab: seed image %s: %w", name, err)
		}
	}
	for _, name := range sortedKeys(profiles) {
		l.EC2.SeedInstanceProfile(name)
	}
	return nil
}

// labImageName turns a name pattern into a name it matches.
func labImageName(pattern string) string {
	out := []rune{}
	for _, r := range pattern {
		switch r {
		case '*':
			out = append(out, []rune("lab")...)
		case '?':
			out = append(out, 'x')
		default:
			out = append(out, r)
		}
	}
	return string(out)
}

// Env is the environment that points every other nestbot verb (and the AWS
// CLI) at the lab, as KEY=VALUE lines.
func (l *Lab) Env() []string {
	id, secret := l.EC2.Credentials()
	return []string{
		"AWS_ENDPOINT_URL=" + l.EC2.URL(),
		"AWS_ACCESS_KEY_ID=" + id,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_REGION=" + l.Region,
		"AWS_EC2_METADATA_DISABLED=true",
		"TS_AUTHKEY=" + l.AuthKey,
	}
}

// Close stops every component.
func (l *Lab) Close() error { return l.EC2.Close() }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
