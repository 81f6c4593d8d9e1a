// Package fsck verifies a cryptpt vault directly on its backing directory,
// without mounting it, and optionally salvages damaged entries.
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
// A sync tool's conflict copy of an encrypted entry (Syncthing's
// "~~c….sync-conflict-DATE-TIME-DEVICE", see [crypt.SplitConflict]) is
// checked as the entry it copies and reported under the name the mount
// shows for it ("report.sync-conflict-….odt"); a long name's copy shares
// its sidecar, which is then neither an orphan nor moved on repair.
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
// With [Options.Repair], Check puts what it found damaged into the directory
// [LostFoundName] at the vault root, which it makes an encrypted-mode
// directory (its vault name is LostFoundName encrypted under the root's
// directory IV, and it has its own IV). Everything in it is an encrypted
// entry, so the mount shows it under readable names and never counts it as
// plaintext where the policy encrypts:
//
//   - A file whose content is damaged is salvaged: a new encrypted file
//     under its decrypted name holds every block that authenticates and zeros
//     for every block that does not (offsets unchanged); the original is
//     renamed beside it as NAME + [DamagedSuffix], vault bytes unchanged (its
//     file ID and blocks do not depend on its name, so the mount still reads
//     its good blocks); NAME + [DamageReportSuffix] is a text file naming the
//     lost plaintext byte ranges. See [Salvage].
//   - An entry whose name does not decrypt (a bad name, a missing or wrong
//     sidecar) is renamed there as "unnamed-" + the start of its vault name,
//     with a damage report saying which directory it was in; what it holds
//     is intact and readable (a directory keeps its IV and children).
//   - A damaged symlink target or an entry that cannot be read is renamed
//     there as NAME + DamagedSuffix.
//   - cryptpt's own files that are not encrypted entries (leftover "~~t"
//     temp files, orphan or wrong sidecars, an unusable directory IV that no
//     entry needs) are stored there as encrypted files holding their exact
//     bytes (NAME.cryptpt-temp, NAME.cryptpt-orphan-sidecar,
//     NAME.cryptpt-sidecar, DIR.cryptpt-diriv) and then removed.
//
// A name already taken is numbered ("report.2.odt"). The sidecar of a
// long name that decrypted is removed with its entry, as the mount does.
// Repair deletes no information. Without a usable root IV, repair falls back
// to moving entries raw into a plaintext-named LostFoundName, as older
// versions did. Check skips LostFoundName (both forms) when walking.
//
// Not repaired: a damaged directory IV of a directory that holds encrypted
// entries (restore it from a backup), a damaged xattr value (remove the
// attribute through the mount), unreadable plaintext entries, and unknown
// reserved names (they may belong to a newer cryptpt; a warning).
// [Report.Unrepaired] counts what is left.
//
// fsck reads and writes the vault through package layout, the code the
// mount reads it with, and crypt; it never mounts and never touches FUSE.
// It must not run with Repair while the vault is mounted: [MountedAt] finds
// such mounts.
package fsck
