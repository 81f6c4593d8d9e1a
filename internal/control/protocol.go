// Package control is the channel between a cryptpt daemon and the cryptpt
// commands that ask it something (status, migrate, reload, explain): a Unix
// socket in a directory of mode 0700 under $XDG_RUNTIME_DIR/cryptpt
// (/run/cryptpt for root), named from a hash of the mountpoint. The daemon
// checks each peer with SO_PEERCRED and lets in only its own uid (the
// mount's owner) and root. Messages are JSON, one Request line answered by
// one Response line (a migrate of a file may send Progress lines first);
// this file is the whole protocol.
//
// The package never touches the vault itself; the daemon's fs.Mount does.
package control

import "cryptpt/fs"

// Operations a Request can ask for.
const (
	// OpStatus asks for the mount's Status.
	OpStatus = "status"
	// OpMigrate asks to convert the entry at Request.Path to the mode the
	// daemon's running policy gives it (fs.Mount.Migrate).
	OpMigrate = "migrate"
	// OpReload asks the daemon to read its config file again and use its
	// policy; a broken file is refused and the old policy kept.
	OpReload = "reload"
)

// Request is one question to the daemon.
type Request struct {
	Op   string `json:"op"`
	Path string `json:"path,omitempty"` // OpMigrate: entry relative to the mount root
}

// Response is the daemon's answer to one Request: Error, or the field of
// the operation asked for.
type Response struct {
	Error string `json:"error,omitempty"` // one line for the user; "" on success
	Errno int    `json:"errno,omitempty"` // the syscall.Errno behind Error, if any

	// Progress, on the lines before OpMigrate's answer, is how many bytes
	// of the file have been converted so far.
	Progress *int64 `json:"progress,omitempty"`

	Status  *Status           `json:"status,omitempty"`
	Migrate *fs.MigrateResult `json:"migrate,omitempty"`
	Reload  *Reload           `json:"reload,omitempty"`
}

// Status is what the daemon reports about its mount.
type Status struct {
	fs.Status
	// ConfigFile is the file the daemon reads its policy from, and reads
	// again on reload; "" when it was mounted without one.
	ConfigFile string `json:"config_file"`
	// ConfigMissing says that ConfigFile did not exist when it was last
	// read (a mount without a policy file: everything new is encrypted).
	ConfigMissing bool `json:"config_missing,omitempty"`
	// Log says where the daemon's log goes: a file, "syslog" or "stderr".
	Log string `json:"log"`
	// Socket is the path of the control socket that answered.
	Socket string `json:"socket"`
}

// Reload is the outcome of a successful OpReload.
type Reload struct {
	ConfigFile string   `json:"config_file"`
	Policy     []string `json:"policy"`  // the plaintext list now in force
	Changed    bool     `json:"changed"` // false if the file gave the same list
}
