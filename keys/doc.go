// Package keys owns the vault config file, the password KDF (Argon2id) and
// the wrapping of the vault master key under a password and a recovery key.
//
// It reads and writes one file, ConfigName ("~~vault.toml") at the vault root,
// plus short-lived TempPrefix ("~~t…") files while replacing it. It never
// prompts, prints or exits (cmd/cryptpt does that), never touches other files
// of the vault, and knows nothing of FUSE or of how the master key is used.
//
// # Use
//
//	master, recovery, err := keys.Create(dir, password, keys.DefaultKDF) // show recovery once
//	v, err := keys.Open(dir, password)                                   // or OpenWithRecoveryKey
//	defer v.Wipe()
//	use(v.Master())
//
// ChangePassword and ResetPassword (with the recovery key) rewrap the same
// master key under a new password; the recovery wrap never changes. Load reads
// the config without any secret (status, fsck).
//
// # Errors
//
// A config that is damaged (bad TOML, an unknown, missing or ill-typed key,
// bad base64, wrong length, KDF parameters out of bounds) is a *CorruptError
// matching ErrCorrupt, naming the field. A well-formed config whose password
// wrap does not open is ErrWrongPassword; the two are never confused. Another
// format version or an unknown feature flag is ErrVersion, checked before
// unknown keys so that a newer vault reports "unsupported" and not "corrupt".
// A recovery key whose checksum or format is wrong is ErrRecoveryKeyTypo; one
// that is well formed but does not open the vault is ErrWrongRecoveryKey.
//
// # Config file (format "cryptpt-vault", version 1)
//
//	| key               | TOML type        | value                                                        |
//	|-------------------|------------------|--------------------------------------------------------------|
//	| format            | string           | "cryptpt-vault"                                              |
//	| version           | integer          | 1; any other value is ErrVersion                             |
//	| [kdf] algorithm   | string           | "argon2id" (x/crypto/argon2 IDKey, version 0x13)             |
//	| [kdf] time        | integer          | passes, 1..1024                                              |
//	| [kdf] memory_kib  | integer          | KiB, 8192 (8 MiB)..4194304 (4 GiB)                           |
//	| [kdf] threads     | integer          | lanes, 1..255                                                |
//	| [kdf] salt        | string           | base64 std (padded) of 32 random bytes                       |
//	| [keys] password   | string           | base64 std of nonce(12) || AES-256-GCM(master key, 32) || tag(16) = 60 bytes, |
//	|                   |                  | key = Argon2id(password, salt, time, memory_kib, threads, 32), AD "cryptpt password wrap v1" |
//	| [keys] recovery   | string           | base64 std of 60 bytes as above, key = HKDF-SHA256(recovery key bytes, salt empty, |
//	|                   |                  | info "cryptpt recovery wrap v1", 32), AD "cryptpt recovery wrap v1" |
//	| [features] flags  | array of strings | feature flags; version 1 defines none, any flag is ErrVersion; the table may be absent |
//
// Any other key is corrupt. All keys except [features] are required.
//
// The KDF bounds are checked on every read, not only by Create: a config
// edited to a trivial KDF (memory below 8 MiB or zero passes) is refused as
// corrupt. There is no test-only bypass; FastKDF is exactly the floor
// (8 MiB, 1 pass, 1 thread, ~4 ms) and production uses DefaultKDF.
//
// # Recovery key
//
// 20 random bytes (160 bits), written as 32 Crockford base32 characters
// (alphabet 0-9 A-Z without I L O U, most significant bit first) followed by 4
// checksum characters (the first 20 bits of SHA-256 of the 20 bytes), in 9
// groups of 4 joined by '-':
//
//	XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-CCCC
//
// Parsing ignores case, spaces and dashes and reads O as 0, I and L as 1.
//
// # Atomic replacement
//
// The config is written to "~~t" + 16 random hex digits in the vault root,
// fsynced, closed, renamed over ConfigName (Create hard-links instead, so an
// existing config is never replaced), and the directory is fsynced. A kill at
// any point leaves a config that opens with the old or the new password; a
// leftover "~~t…" file is harmless.
package keys
