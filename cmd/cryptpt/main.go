// Command cryptpt mounts an encrypted vault in which paths chosen by a policy
// stay plaintext and run at native speed through FUSE passthrough.
package main

import (
	"errors"
	"fmt"
	"os"
)

// version is set by the Makefile from git describe.
var version = "dev"

const usage = `cryptpt: an encrypted home directory with native-speed plaintext paths

Usage:
  cryptpt init    [--passfile F | --extpass CMD] BACKING
  cryptpt mount   [--config C] [--passfile F | --extpass CMD] [-f] [--ro] [BACKING MOUNTPOINT]
  cryptpt unmount [-z] MOUNTPOINT
  cryptpt status  [--json] MOUNTPOINT
  cryptpt reload  MOUNTPOINT
  cryptpt explain [--config C] PATH...
  cryptpt passwd  [--recovery-key] BACKING
  cryptpt migrate [--dry-run] [--config C] MOUNTPOINT
  cryptpt fsck    [--passfile F | --extpass CMD] [--repair] BACKING
  cryptpt info    BACKING
  cryptpt home    init|abort|mount|unmount|pam [OPTIONS] USER
  cryptpt version

Run "cryptpt COMMAND --help" for a command's options.
`

type command struct {
	name string
	run  func(args []string) error
}

func commands() []command {
	return []command{
		{"init", runInit},
		{"mount", runMount},
		{"unmount", runUnmount},
		{"umount", runUnmount},
		{"status", runStatus},
		{"reload", runReload},
		{"explain", runExplain},
		{"passwd", runPasswd},
		{"migrate", runMigrate},
		{"fsck", runFsck},
		{"info", runInfo},
		{"home", runHome},
		{"version", runVersion},
	}
}

func main() {
	harden()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Print(usage)
		return exitOK
	case "--version", "-version":
		return report(runVersion(nil))
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return report(c.run(args[1:]))
		}
	}
	errorf("unknown command %q", args[0])
	hintf("run \"cryptpt --help\" for the list of commands")
	return exitUsage
}

// report prints err for the user and returns the exit code for it.
func report(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *userError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			errorf("%s", ue.msg)
		}
		if ue.hint != "" {
			hintf("%s", ue.hint)
		}
		return ue.code
	}
	errorf("%v", err)
	return exitError
}

func runVersion([]string) error {
	fmt.Println("cryptpt", version)
	return nil
}
