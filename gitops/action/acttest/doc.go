// Package acttest holds the tests of nestbot's GitHub Action as a user runs
// it: action.yml (its metadata, and its scripts checked by shellcheck) and
// examples/workflows/nest.yml run by act (github.com/nektos/act) on a
// self-hosted runner, offline, against the lab — the lab's GitHub serving
// the infra repository, its API and its webhook events, and the lab's EC2,
// tailnet and hosts standing in for the fleet — and the release the action
// installs: a goreleaser snapshot of this repository, served with its tags
// by a loopback github.com, and the release configuration (.goreleaser.yaml,
// the moving tags, the Dockerfiles).
//
// It has no code of its own: only tests and their testdata.
package acttest
