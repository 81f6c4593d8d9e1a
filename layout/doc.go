// Package layout is the vault's on-disk layout as both the mount (package
// fs) and fsck read and write it, so that fsck checks a vault with the very
// code the mount reads it with.
//
// It owns:
//   - the small files cryptpt keeps beside the entries (directory IVs,
//     long-name sidecars): one reader ([ReadSmallFile]: no symlinks, no FIFOs
//     or devices, a size bound) and one atomic writer ([WriteFile]: temp
//     file, fsync, rename, directory fsync), which package keys also uses
//     for the vault config;
//   - directory IVs on disk ([ReadDirIV], [CreateDirIV]);
//   - the sealed values of encrypted entries: symlink targets
//     ([SealSymlink], [OpenSymlink]) and user.* xattr values ([SealXattr],
//     [OpenXattr]), in every format a vault may hold, and reading xattrs
//     through an fd ([ListXattrs], [GetXattr]).
//
// The grammar of stored names (the reserved "~~" names, [crypt.Classify])
// and the bytes of every sealed value (the associated data,
// [crypt.SymlinkAD], [crypt.XattrAD]) are package crypt's; layout applies
// them to files and directories. It works on directory fds with O_NOFOLLOW
// on the last component, never follows a symlink planted in the vault, and
// knows nothing of FUSE, the policy or the vault config's contents.
package layout
