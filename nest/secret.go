package nest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretFile bounds what a secret file may hold.
const maxSecretFile = 64 << 10

// Resolve reads the secret a reference names: the environment variable
// (or, by the container convention, a file named by <VAR>_FILE, which the
// operator's environment gives), or the file. A file: reference — written
// in nest.yaml, so by whoever wrote the file — resolves only inside dir,
// the directory the operator gave for secrets (--secrets-dir), and through
// no link out of it; with no dir it is refused. Errors name the source,
// never the value.
func (r SecretRef) Resolve(getenv func(string) string, dir string) (string, error) {
	switch {
	case r.Env != "":
		v := getenv(r.Env)
		if v == "" {
			if file := getenv(r.Env + "_FILE"); file != "" {
				return ReadSecretFile(file)
			}
			return "", fmt.Errorf("secret %s is not set: export %s (or %s_FILE naming a file that holds it)", r, r.Env, r.Env)
		}
		return strings.TrimSpace(v), nil
	case r.File != "":
		return r.readIn(dir)
	}
	return "", errors.New("no secret source configured")
}

// readIn reads r.File inside dir.
func (r SecretRef) readIn(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("secret %s: file: references are read only inside the secrets directory, and none is set: give it (--secrets-dir or NESTBOT_SECRETS_DIR), or use {env: VARIABLE}", r)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", r, err)
	}
	p := filepath.FromSlash(r.File)
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	rel, err := filepath.Rel(dir, filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("secret %s is outside the secrets directory %s: nestbot reads file: secrets only there (move it there, or use {env: VARIABLE})", r, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("secret %s: the secrets directory: %w", r, err)
	}
	defer root.Close()
	if fi, err := root.Lstat(rel); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("secret %s is a symbolic link: nestbot follows no link in the secrets directory %s", r, dir)
	}
	f, err := root.Open(rel)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", r, errors.Unwrap(err))
	}
	defer f.Close()
	return readSecret(r.String(), f)
}

// ReadSecretFile reads a secret from a file the operator named (a
// <VAR>_FILE variable, a flag): anywhere, as the operator may. Errors name
// the file, never what it holds.
func ReadSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	return readSecret("file "+path, f)
}

func readSecret(name string, rd io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(rd, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", name, err)
	}
	if len(data) > maxSecretFile {
		return "", fmt.Errorf("secret %s is larger than %d bytes: it is not a secret", name, maxSecretFile)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("secret %s is empty", name)
	}
	return v, nil
}
