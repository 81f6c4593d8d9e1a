package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"cryptpt/config"
	"cryptpt/fs"
	"cryptpt/internal/control"
)

func runReload(args []string) error {
	fl := newFlags("reload", "reload MOUNTPOINT")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "reload takes one argument, the mountpoint")
	}
	mp, _ := filepath.Abs(pos[0])
	c, err := dialDaemon(mp)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Reload()
	if err != nil {
		return fail("fix the file and run \"cryptpt reload "+mp+"\" again", "%v", err)
	}
	what := "unchanged"
	if r.Changed {
		what = "now in force"
	}
	fmt.Printf("Policy from %s %s: %s\n", r.ConfigFile, what, policyLine(r.Policy))
	fmt.Println("Existing entries keep their stored mode; \"cryptpt migrate " + mp + "\" converts them.")
	return nil
}

// policyLine shows a plaintext list on one line.
func policyLine(rules []string) string {
	if len(rules) == 0 {
		return "no plaintext rules (everything new is encrypted)"
	}
	return fmt.Sprintf("plaintext = %q", rules)
}

// dialDaemon connects to the daemon of the cryptpt mount at mp, with one
// line for each way that fails.
func dialDaemon(mp string) (*control.Client, error) {
	if m, _ := fs.FindMount(mp); m != mp {
		return nil, fail("mount it with \"cryptpt mount BACKING "+mp+"\"", "%s is not a cryptpt mount", mp)
	}
	c, err := control.Dial(mp)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, control.ErrDaemonGone):
		return nil, fail("run \"cryptpt unmount "+mp+"\", then mount again; the vault itself is unharmed", "the daemon of %s is gone (killed or crashed)", mp)
	case errors.Is(err, control.ErrDenied):
		return nil, fail("run it as the user who mounted it, or as root", "cannot ask the daemon of %s: %v", mp, err)
	case errors.Is(err, control.ErrNoSocket):
		return nil, fail("see the daemon's log; remounting makes a new socket", "cannot ask the daemon of %s: %v", mp, err)
	}
	return nil, fail("", "cannot ask the daemon of %s: %v", mp, err)
}

// policySource is the daemon's side of reload: the config file it was
// mounted with, read again on "cryptpt reload" and SIGHUP.
type policySource struct {
	file   string // absolute; may not exist
	m      *fs.Mount
	logger *log.Logger

	mu      sync.Mutex
	missing bool // the file did not exist when last read
}

func (p *policySource) config() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.file, p.missing
}

// reload reads the file again and puts its policy in force. A file that is
// missing or does not parse changes nothing; the error says where it is
// broken (file:line:col).
func (p *policySource) reload() (*control.Reload, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cfg, err := config.Load(p.file)
	if err != nil {
		var pe *config.ParseError
		switch {
		case errors.As(err, &pe):
			err = fmt.Errorf("%v (the daemon keeps the policy it had)", pe)
		case errors.Is(err, os.ErrNotExist):
			err = fmt.Errorf("config file %s does not exist (the daemon keeps the policy it had)", p.file)
		default:
			err = fmt.Errorf("%s: %v (the daemon keeps the policy it had)", p.file, err)
		}
		p.logger.Printf("reload refused: %v", err)
		return nil, err
	}
	before, after := patterns(p.m.Policy()), patterns(cfg.Policy)
	p.m.SetPolicy(cfg.Policy)
	p.missing = false
	r := &control.Reload{ConfigFile: p.file, Policy: after, Changed: !slices.Equal(before, after)}
	p.logger.Printf("reloaded the policy from %s: %d rules (changed: %v)", p.file, len(after), r.Changed)
	return r, nil
}

func patterns(p *config.Policy) []string {
	out := []string{}
	for _, r := range p.Rules() {
		out = append(out, r.Pattern)
	}
	return out
}
