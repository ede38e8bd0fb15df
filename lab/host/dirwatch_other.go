//go:build !linux

package host

import "errors"

// watchDir is inotify's, on Linux only: elsewhere the host polls.
func watchDir(string) (wait func() error, stop func(), err error) {
	return nil, nil, errors.New("no inotify")
}
