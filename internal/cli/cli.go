// Package cli holds what nestbot's commands (nestbot, nestlab) share on
// the command line: where they read and write, the exit code an error
// carries, and every flag's NESTBOT_<FLAG> environment variable.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// IO is where a command reads and writes; tests swap it.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	Getenv   func(string) string
	// IsTerminal reports whether Out is a terminal (for colour).
	IsTerminal func() bool
	// NoColor is --no-color: no colour even on a terminal.
	NoColor bool
}

// Color reports whether output to Out may be coloured: on a terminal,
// unless --no-color is given or NO_COLOR is set to anything (no-color.org).
func (io *IO) Color() bool {
	return !io.NoColor && io.Getenv("NO_COLOR") == "" && io.IsTerminal != nil && io.IsTerminal()
}

// Conventions sets up on root what every nestbot command line shares:
// --no-color (into io.NoColor), and a mistaken flag answered with the
// command's --help (cobra's own error names only the flag).
func Conventions(io *IO, root *cobra.Command) {
	root.PersistentFlags().BoolVar(&io.NoColor, "no-color", false, "never colour the output (as NO_COLOR does)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("Error: %v\nRun '%s --help' for the flags it takes.", err, cmd.CommandPath())}
	})
}

// StdIO is the process's own standard streams and environment.
func StdIO() *IO {
	return &IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, IsTerminal: StdoutIsTerminal}
}

// ExitError carries an exit code other than 1 (e.g. 2: changes present),
// and the message to print instead of "Error: …" (none if empty).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Run executes root with args and returns the process exit code.
func Run(io *IO, root *cobra.Command, args []string) int {
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetIn(io.In)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintln(io.Err, ee.Msg)
		}
		return ee.Code
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command ") { // cobra's, which it follows with this hint unless SilenceErrors
		msg += "\nRun '" + root.Name() + " --help' for the commands."
	}
	fmt.Fprintln(io.Err, "Error:", msg)
	return 1
}

// BindEnv fills every flag the command line did not set from NESTBOT_<FLAG>.
func BindEnv(cmd *cobra.Command, getenv func(string) string) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := EnvName(f.Name)
		if v := getenv(name); v != "" {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName is the environment variable that sets a flag: --webhook-secret ↔ NESTBOT_WEBHOOK_SECRET.
func EnvName(flag string) string {
	return "NESTBOT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, so a reader never sees half a file and a failure leaves none.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// StdoutIsTerminal reports whether the process's standard output is a terminal.
func StdoutIsTerminal() bool {
	fd := os.Stdout.Fd()
	return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
}
