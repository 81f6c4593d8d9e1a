// Package keys owns the vault config file, the password KDF (Argon2id) and
// the wrapping of the vault master key under a password and a recovery key.
//
// It reads and writes one file, crypt.VaultConfigName ("~~vault.toml") at the
// vault root, plus short-lived crypt.TempPrefix ("~~t…") files while
// replacing it (layout.WriteFile, the vault's one atomic writer). It never
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
// master key under a new password with a fresh salt; the recovery wrap never
// changes. They never write KDF parameters below DefaultKDF, and they write a
// version-2 config, also when the vault's was version 1. Load reads the
// config without any secret (status, fsck).
//
// # Errors
//
// A config that is damaged (bad TOML, an unknown, missing or ill-typed key,
// bad base64, wrong length, KDF parameters out of bounds) is a *CorruptError
// matching ErrCorrupt, naming the field. A well-formed config whose password
// wrap does not open is ErrWrongPassword; the two are never confused. In
// version 2 the password wrap is bound to the KDF parameters and salt, so a
// config whose KDF was edited also reads as ErrWrongPassword (nothing tells
// the two apart without the key); the recovery key tells it: a version-2
// config whose MAC does not match is ErrTampered, and so is one whose
// version was relabelled. Another format version or an unknown feature flag
// is ErrVersion, checked before unknown keys so that a newer vault reports
// "unsupported" and not "corrupt". A recovery key whose checksum or format
// is wrong is ErrRecoveryKeyTypo; one that is well formed but does not open
// the vault is ErrWrongRecoveryKey.
//
// # Config file (format "cryptpt-vault", versions 1 and 2)
//
//	| key               | TOML type        | value                                                        |
//	|-------------------|------------------|--------------------------------------------------------------|
//	| format            | string           | "cryptpt-vault"                                              |
//	| version           | integer          | 2 (written), or 1 (read); any other value is ErrVersion      |
//	| [kdf] algorithm   | string           | "argon2id" (x/crypto/argon2 IDKey, version 0x13)             |
//	| [kdf] time        | integer          | passes, 2..1024                                              |
//	| [kdf] memory_kib  | integer          | KiB, 19456 (19 MiB)..4194304 (4 GiB)                         |
//	| [kdf] threads     | integer          | lanes, 1..255                                                |
//	| [kdf] salt        | string           | base64 std (padded) of 32 random bytes                       |
//	| [keys] password   | string           | base64 std of nonce(12) || AES-256-GCM(master key, 32) || tag(16) = 60 bytes, |
//	|                   |                  | key = Argon2id(password, salt, time, memory_kib, threads, 32), |
//	|                   |                  | AD "cryptpt password wrap v1" (version 1), or "cryptpt password wrap v2" || binding (version 2) |
//	| [keys] recovery   | string           | base64 std of 60 bytes as above, key = HKDF-SHA256(recovery key bytes, salt empty, |
//	|                   |                  | info "cryptpt recovery wrap v1", 32), AD "cryptpt recovery wrap v1" (both versions) |
//	| [keys] mac        | string           | version 2 only (a key in version 1): base64 std of the 32-byte config MAC |
//	| [features] flags  | array of strings | feature flags; versions 1 and 2 define none, any flag is ErrVersion; the table may be absent |
//
// Any other key is corrupt. All keys except [features] are required.
//
// The binding (version 2), all integers big-endian:
//
//	| offset | size | field                                        |
//	|--------|------|----------------------------------------------|
//	| 0      | 4    | version (2)                                  |
//	| 4      | 4    | kdf.time                                     |
//	| 8      | 4    | kdf.memory_kib                               |
//	| 12     | 1    | kdf.threads                                  |
//	| 13     | 32   | kdf.salt                                     |
//	| 45     | 2    | number of feature flags                      |
//	| 47     | ...  | each flag: length (2 bytes) || its bytes     |
//
// The config MAC (version 2) is HMAC-SHA256 under HKDF-SHA256(master key,
// salt empty, info "cryptpt config v2", 32) of binding || password wrap (60)
// || recovery wrap (60). Open checks it after the password wrap opens, and
// OpenWithRecoveryKey after the recovery wrap opens; a mismatch is
// ErrTampered. A config relabelled from one version to the other is
// ErrTampered too: its password wrap opens only with the other version's
// associated data.
//
// The KDF bounds are checked on every read, not only by Create: a config
// edited to a cheap KDF (below OWASP's minimum for Argon2id, 19 MiB and 2
// passes) is refused as corrupt. Only the recovery key path, which does not
// run the KDF, reads the parameters leniently, so that ResetPassword can
// replace them. There is no test-only bypass; tests use MinKDF, exactly the floor
// (19 MiB, 2 passes, 1 thread, ~20 ms) and production uses DefaultKDF.
//
// A password change keeps the KDF parameters when they are vouched for (the
// old password opened the wrap bound to them, or the version-2 MAC checks)
// and at least DefaultKDF's passes and memory; otherwise it writes
// DefaultKDF. A reset of a version-1 config, or of an altered version-2
// one, therefore always writes DefaultKDF: a downgrade made in the config
// never survives a reset.
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
// The config is written to a temp file "~~t…" in the vault root, fsynced,
// closed, renamed over crypt.VaultConfigName (Create renames with
// RENAME_NOREPLACE, so an existing config is never replaced), and the
// directory is fsynced (layout.WriteFile). A kill at
// any point leaves a config that opens with the old or the new password; a
// leftover "~~t…" file is harmless.
package keys
