package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"cryptpt/keys"

	"golang.org/x/term"
)

// stdinLines reads secrets given line by line on a non-terminal stdin; one
// reader, so a second secret is not lost in the first one's buffer.
var stdinLines = bufio.NewReader(os.Stdin)

// secretSource is where a command reads a password from.
type secretSource struct {
	passfile string
	extpass  string
}

func (s *secretSource) register(fs *flag.FlagSet) {
	fs.StringVar(&s.passfile, "passfile", "", "read the password from the first line of `FILE`")
	fs.StringVar(&s.extpass, "extpass", "", "run `CMD` (with sh -c) and use its first output line as the password")
}

func (s *secretSource) interactive() bool {
	return s.passfile == "" && s.extpass == "" && term.IsTerminal(int(os.Stdin.Fd()))
}

// read returns the password. prompt is shown only when reading from a terminal.
func (s *secretSource) read(prompt string) ([]byte, error) {
	var pw []byte
	switch {
	case s.passfile != "" && s.extpass != "":
		return nil, fail("", "--passfile and --extpass are mutually exclusive")
	case s.passfile != "":
		data, err := os.ReadFile(s.passfile)
		if err != nil {
			return nil, fail("", "cannot read password file: %v", err)
		}
		pw = firstLine(data)
	case s.extpass != "":
		cmd := exec.Command("/bin/sh", "-c", s.extpass)
		cmd.Stdin = os.Stdin
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fail("", "--extpass command failed: %v", err)
		}
		pw = firstLine(out)
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fail("", "cannot read password: %v", err)
		}
		pw = b
	default:
		line, err := stdinLines.ReadBytes('\n')
		if err != nil && len(line) == 0 {
			return nil, fail("use --passfile or --extpass, or run it from a terminal", "no password given on standard input")
		}
		pw = firstLine(line)
	}
	if len(pw) == 0 {
		return nil, fail("", "the password is empty")
	}
	return pw, nil
}

// readNew reads a new password, asking twice on a terminal.
func (s *secretSource) readNew(prompt string) ([]byte, error) {
	pw, err := s.read(prompt)
	if err != nil || !s.interactive() {
		return pw, err
	}
	again, err := s.read("Repeat: ")
	if err != nil {
		return nil, err
	}
	defer clear(again)
	if !bytes.Equal(pw, again) {
		clear(pw)
		return nil, fail("", "the passwords do not match")
	}
	return pw, nil
}

// openVault asks for the password and opens the vault at dir. The caller
// wipes the returned vault's key.
func (s *secretSource) openVault(dir string) (*keys.Vault, error) {
	pw, err := s.read("Password: ")
	if err != nil {
		return nil, err
	}
	v, err := keys.Open(dir, pw)
	clear(pw)
	if err != nil {
		return nil, vaultError(err, dir)
	}
	return v, nil
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return bytes.TrimSuffix(b, []byte("\r"))
}
