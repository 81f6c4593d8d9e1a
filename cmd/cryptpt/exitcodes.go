package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// Exit codes. Only main calls os.Exit.
const (
	exitOK      = 0
	exitError   = 1 // anything the user can fix: wrong password, bad path, bad config
	exitUsage   = 2 // bad command line
	exitDamaged = 3 // fsck found damage in the vault (with --repair: damage it could not repair)
)

// userError is an error with the words and exit code meant for the user.
type userError struct {
	msg  string
	hint string
	code int
}

func (e *userError) Error() string { return e.msg }

func fail(hint, format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...), hint: hint, code: exitError}
}

func usageError(fs *flag.FlagSet, format string, args ...any) error {
	return &userError{
		msg:  fmt.Sprintf(format, args...),
		hint: fmt.Sprintf("run \"cryptpt %s --help\" for its usage", fs.Name()),
		code: exitUsage,
	}
}

// errHelp ends a command that printed its help.
var errHelp = &userError{code: exitOK}

func errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cryptpt: error: "+format+"\n", args...)
}

func hintf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cryptpt: hint: "+format+"\n", args...)
}

// parseFlags parses flags and positional arguments in any order, which plain
// flag.Parse does not (it stops at the first positional argument).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(os.Stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &userError{code: exitUsage, hint: fmt.Sprintf("run \"cryptpt %s --help\" for its usage", fs.Name())}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlags makes a flag set whose --help prints the command's synopsis.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cryptpt %s\n\nOptions:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
