package nest

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Resolve reads the secret a reference names: the environment variable
// (or, by the container convention, a file named by <VAR>_FILE), or the
// file. Errors name the source, never the value.
func (r SecretRef) Resolve(getenv func(string) string) (string, error) {
	var v string
	switch {
	case r.Env != "":
		v = getenv(r.Env)
		if v == "" {
			if file := getenv(r.Env + "_FILE"); file != "" {
				return readSecretFile(file)
			}
			return "", fmt.Errorf("secret %s is not set: export %s (or %s_FILE naming a file that holds it)", r, r.Env, r.Env)
		}
	case r.File != "":
		return readSecretFile(r.File)
	default:
		return "", errors.New("no secret source configured")
	}
	return strings.TrimSpace(v), nil
}

func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return v, nil
}
