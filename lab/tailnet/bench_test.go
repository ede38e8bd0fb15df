package tailnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/ducksnest/nestbot/lab/tailnet"
)

// BenchmarkMintKey is one POST .../keys through the lab's API.
func BenchmarkMintKey(b *testing.B) {
	lab := &tailnet.Lab{Tags: []string{"tag:nest"}}
	if err := lab.Start(); err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	for b.Loop() {
		mint(b, lab, keyCaps{Tags: []string{"tag:nest"}})
	}
}

// BenchmarkJoinWithMintedKey is a node joining through the control front
// with a one-off key (admitted, passed on to testcontrol, home DERP
// reached), then leaving.
func BenchmarkJoinWithMintedKey(b *testing.B) {
	lab := &tailnet.Lab{Tags: []string{"tag:nest"}}
	if err := lab.Start(); err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for b.Loop() {
		b.StopTimer()
		key := mint(b, lab, keyCaps{Preauthorized: true, Tags: []string{"tag:nest"}})
		dir := b.TempDir()
		b.StartTimer()
		s, err := lab.Join(ctx, tailnet.NodeConfig{Hostname: "web", Dir: dir, AuthKey: key})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkJoinBypassingFront is the same join straight to testcontrol
// with the lab's key: what the front costs is the difference.
func BenchmarkJoinBypassingFront(b *testing.B) {
	lab := &tailnet.Lab{Tags: []string{"tag:nest"}}
	if err := lab.Start(); err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		s, err := tailnet.Join(ctx, tailnet.NodeConfig{Hostname: "web", Dir: dir, AuthKey: lab.AuthKey(),
			ControlURL: lab.Control().BaseURL(), Tags: []string{"tag:nest"}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
