// Package fsck verifies a cryptpt vault directly on its backing directory,
// without mounting it, and optionally moves damaged entries aside.
//
// [Check] walks the whole vault from the root, opening every directory
// relative to its parent's descriptor with O_NOFOLLOW (symlinks in the vault
// are read with readlinkat, never followed), and verifies:
//
//   - every directory's "~~diriv": present (16 bytes, a regular file) wherever
//     the directory holds encrypted entries;
//   - every encrypted name ("~~c…") decrypts under its directory's IV;
//   - every long name ("~~l…") has its sidecar ("~~n…"), whose contents hash
//     to the long name and decrypt; sidecars without a long name (orphans);
//   - every encrypted regular file: a valid ciphertext size ([crypt.PlainSize]),
//     the header, and every block's authentication tag;
//   - every encrypted symlink target and every user.* extended attribute value
//     of an encrypted file or directory;
//   - leftover "~~t…" temporary files and "~~" names this version does not
//     know.
//
// Plaintext-mode entries are listed and walked but have nothing to verify.
//
// Findings are [Problem] values. A problem is either damage (something the
// mount cannot serve: a block, a name, a sidecar, a directory IV, a symlink
// target or an xattr value) or a warning (a leftover temp file, an orphan
// sidecar, an unknown reserved name), which costs nothing but space.
//
// # Repair
//
// With [Options.Repair], Check never deletes anything. It moves each damaged
// entry (and the sidecar of a damaged long name), each leftover temp file and
// each orphan sidecar, with its vault bytes unchanged, into the directory
// [LostFoundName] at the vault root. The moved entry's name is its vault name
// without the "~~" prefix, so it is a plaintext-mode entry there: the mount
// shows it (as raw ciphertext, which reveals nothing the vault did not) and
// the user can inspect, copy or delete it. A directory moved there keeps its
// own "~~diriv" and children, so whatever of it still decrypts stays readable
// through the mount. Check skips [LostFoundName] when walking.
//
// Not repaired: a damaged directory IV of a directory that holds encrypted
// entries (restore it from a backup), a damaged xattr value (remove the
// attribute through the mount), and unknown reserved names (they may belong
// to a newer cryptpt).
//
// fsck imports crypt and keys only; it never mounts and never touches FUSE.
// It must not run with Repair while the vault is mounted: [MountedAt] finds
// such mounts.
package fsck
