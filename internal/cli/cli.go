// Package cli holds what nestbot's commands (nestbot, nestlab) share on
// the command line: where they read and write, the exit code an error
// carries, and every flag's NESTBOT_<FLAG> environment variable.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ducksnest/nestbot/internal/logs"

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
	// ErrIsTerminal reports whether Err is a terminal (for the log's
	// format).
	ErrIsTerminal func() bool
	// NoColor is --no-color: no colour even on a terminal.
	NoColor bool
	// LogFormat is --log-format: auto, text or json.
	LogFormat string
	// LogLevel is --log-level: debug, info, warn or error.
	LogLevel string
}

// CheckLog reports whether LogFormat and LogLevel are values the flags
// take; the root command asks before any verb runs.
func (io *IO) CheckLog() error {
	if err := logs.CheckFormat(io.LogFormat); err != nil {
		return err
	}
	_, err := logs.ParseLevel(io.LogLevel)
	return err
}

// Logger is the command's logger, writing to Err in LogFormat (auto: JSON
// unless Err is a terminal) at LogLevel and above. The root command checks
// both before any verb runs (CheckLog); a value it would refuse is taken
// as the default.
func (io *IO) Logger() *slog.Logger {
	terminal := io.ErrIsTerminal != nil && io.ErrIsTerminal()
	level, err := logs.ParseLevel(io.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	l, err := logs.New(io.Err, cmp.Or(io.LogFormat, logs.FormatAuto), level, terminal)
	if err != nil {
		l, _ = logs.New(io.Err, logs.FormatAuto, level, terminal)
	}
	return l
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
	return &IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, IsTerminal: StdoutIsTerminal, ErrIsTerminal: stderrIsTerminal}
}

// ExitError carries an exit code other than 1 (e.g. 2: changes present),
// and the message to print instead of "Error: …" (none if empty).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Interrupted is the cause of the root context's cancellation when a
// signal stopped the command.
type Interrupted struct{ Signal os.Signal }

func (e *Interrupted) Error() string { return e.Signal.String() }

// ExitCode is the shell's convention for a process a signal stopped:
// 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
func (e *Interrupted) ExitCode() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// Run executes root with args and returns the process exit code.
//
// The command runs on the one root context (cmd.Context()), which the first
// SIGINT or SIGTERM cancels: Run says so on Err, lets the command wind
// down, and returns 128 + the signal's number (130 for Ctrl-C, 143 for
// SIGTERM). A second signal exits at once with that code.
func Run(io *IO, root *cobra.Command, args []string) int {
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetIn(io.In)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := cancelOnSignal(io, root.Name(), cancel)
	err := root.ExecuteContext(ctx)
	stop()
	var sig *Interrupted
	if errors.As(context.Cause(ctx), &sig) {
		if err != nil && err.Error() != context.Canceled.Error() { // what it says beyond "context canceled" may matter
			fmt.Fprintln(io.Err, "Error:", err)
		}
		io.Logger().Warn(fmt.Sprintf("%s: stopped by %s", root.Name(), sig), "exit", sig.ExitCode())
		return sig.ExitCode()
	}
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

// cancelOnSignal cancels with an *Interrupted cause on the first SIGINT
// or SIGTERM, and exits the process on the second. stop ends it.
func cancelOnSignal(io *IO, name string, cancel context.CancelCauseFunc) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var first os.Signal
		select {
		case first = <-sigs:
		case <-done:
			return
		}
		cause := &Interrupted{Signal: first}
		io.Logger().Warn(fmt.Sprintf("%s: %s: winding down; %s again to stop at once", name, first, signalKey(first)))
		cancel(cause)
		select {
		case s := <-sigs:
			io.Logger().Warn(fmt.Sprintf("%s: %s again: stopping at once", name, s), "exit", cause.ExitCode())
			os.Exit(cause.ExitCode())
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

func signalKey(s os.Signal) string {
	if s == os.Interrupt {
		return "Ctrl-C"
	}
	return s.String()
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

func stderrIsTerminal() bool { return Terminal(os.Stderr) }

// StdoutIsTerminal reports whether the process's standard output is a terminal.
func StdoutIsTerminal() bool { return Terminal(os.Stdout) }

// Terminal reports whether f is a terminal; a nil f is not.
func Terminal(f *os.File) bool {
	if f == nil {
		return false
	}
	fd := f.Fd()
	return isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
}
