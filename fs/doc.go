// Package fs is the FUSE side of cryptpt: a go-fuse v2 filesystem over a vault
// directory in which encrypted and plaintext entries live side by side.
//
// Every entry's mode is stored in the form of its name in the vault
// ("~~c…"/"~~l…" for encrypted entries, the name itself for plaintext ones) and is
// never re-derived from the policy; the policy only decides the mode of new
// entries. Encrypted file handles (encFile) encrypt and decrypt in the daemon and
// have no way to hand out a backing fd. Of the plaintext handles only
// passthroughFile hands the kernel its backing fd; plainFile is served by the
// daemon. viewFile hands the kernel a file of the view (view.go), never a vault
// file.
//
// All backing access is relative to the vault root's fd or to directory file
// descriptors (a bounded set, dirfds.go, reopened relative to the parent's),
// with O_NOFOLLOW or AT_SYMLINK_NOFOLLOW on the final component, so no symlink
// planted in the vault can make the daemon touch anything outside it.
// The vault's own small files (directory IVs, long-name sidecars) and the
// sealed symlink targets and xattr values are read and written through
// package layout, the same code fsck checks a vault with.
//
// The package never prompts, prints to the terminal or exits; it logs through the
// logger it is given and reports errors as syscall.Errno to the kernel.
package fs
