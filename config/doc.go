// Package config reads the user's cryptpt configuration file (vault paths
// and the plaintext policy) and decides, by path, whether a new entry in the
// mount is stored encrypted or in plaintext. It never touches FUSE, keys,
// cryptography or the vault itself: it only reads one TOML file and matches
// path strings.
//
// # The configuration file
//
// The default location is $XDG_CONFIG_HOME/cryptpt/config.toml, or
// ~/.config/cryptpt/config.toml when XDG_CONFIG_HOME is not set (see
// DefaultPath). Every key is optional:
//
//	[vault]
//	backing    = "~/.local/share/cryptpt/home"   # the encrypted directory
//	mountpoint = "~/Private"                     # where it is mounted
//	untrusted_storage = false                    # see below
//
//	[policy]
//	plaintext = ["Videos/", ".cache/", "!Videos/private/"]
//
// backing and mountpoint must be absolute paths or start with "~/" (the home
// directory, from $HOME). Relative paths are rejected, because the same file
// is read from different working directories and the daemon does not keep
// one; "~user" is not supported.
//
// untrusted_storage is for a vault that others can write to (a sync
// provider, a shared disk). Files stored in plaintext cannot be
// authenticated, so a plaintext file found at a path the policy encrypts may
// have been planted there. With untrusted_storage = true such files are
// hidden and logged; otherwise they are shown and counted by
// `cryptpt status`. Either way, `cryptpt migrate` encrypts them.
//
// Mistakes are reported with the file, line and column, and a hint, e.g.
//
//	config.toml:7:14: bad pattern "Vid[eos/": "[" starts a character class that is never closed; ...
//
// Unknown keys are errors too, so a typo such as "plaintxt" never silently
// leaves files encrypted (or plaintext). Columns count bytes from 1.
//
// # The plaintext policy
//
// Everything is encrypted unless the policy says otherwise. policy.plaintext
// is a list of patterns in .gitignore syntax, matched against paths relative
// to the mount root: with the mount at ~/Private, the file
// ~/Private/Videos/cat.mp4 is "Videos/cat.mp4". A matching pattern makes a
// new entry plaintext; a pattern starting with "!" makes it encrypted again.
// The last pattern that matches decides. No match means encrypted.
//
// The policy decides the mode of new files and directories only. An existing
// entry keeps the mode it was created with, even if you change the policy
// later; run `cryptpt migrate` to convert existing entries to the current
// policy, and `cryptpt explain PATH` to see which pattern decides a path.
//
// Prefer directory rules ("Videos/") over extension rules ("*.iso").
// Programs often write a file under a temporary name and rename it into
// place, and a browser downloads to "x.part" before renaming it to "x". An
// encrypted file stays encrypted when renamed, so a download renamed to
// "disk.iso" stays encrypted despite "*.iso"; it still works, only without
// the plaintext speed, and `cryptpt status` counts it until you run
// `cryptpt migrate`. With a directory rule the temporary file is already
// inside the directory, so it is created plaintext from the start.
//
// # Pattern syntax
//
//   - A pattern without a slash, such as "*.iso" or ".cache/", matches a name
//     at any depth: "*.iso" matches "a.iso" and "deep/down/x.iso"; "Videos/"
//     matches "Videos" and also "Work/Videos".
//   - A pattern with a slash at the start or in the middle is anchored at the
//     mount root: "/Videos/" matches only the top-level Videos, and
//     "docs/*.md" matches "docs/a.md" but not "x/docs/a.md" or
//     "docs/sub/a.md".
//   - A trailing slash matches directories only: "build/" matches the
//     directory build but not a file named build.
//   - "*" matches any run of characters except "/", including none; "?"
//     matches one character except "/". Unlike in a shell, they also match a
//     leading dot: "*" matches ".bashrc".
//   - "[abc]" matches one of the characters a, b or c; "[a-z0-9]" matches
//     one character in the ranges; "[!a-z]" or "[^a-z]" matches one
//     character not in them. A "]" right after "[" or "[!" is literal, as is
//     a "-" at the start or end. POSIX classes ("[:alpha:]") are not
//     supported.
//   - "**" as a whole segment spans directories: "**/foo" matches foo at any
//     depth (like "foo"); "a/**/b" matches "a/b", "a/x/b" and "a/x/y/b" but
//     not "ab/x/b"; "foo/**" matches everything inside foo, but not foo
//     itself; "**" alone matches everything. Elsewhere "**" is the same as
//     "*".
//   - A leading "!" negates: the entries the pattern matches are encrypted.
//   - A backslash makes the next character literal: "\!important" and
//     "\#notes" match names that start with "!" and "#", "\*" matches a
//     star, "\\" a backslash. Note that TOML strings in double quotes have
//     their own escapes, so write "\\#notes" there, or use single quotes:
//     '\#notes'.
//   - Trailing spaces are ignored unless escaped: "name\ ".
//
// These are errors, reported with their position: an empty pattern, a
// pattern that is only "!" or "/", a pattern starting with "#" (a comment in
// .gitignore; here it would silently match nothing), a "[" without its "]",
// a backwards range such as "[z-a]", a lone "\" at the end, an escaped "/",
// an empty segment ("a//b") and "." or ".." segments.
//
// # Differences from git
//
// A pattern that matches a directory applies to everything below it, and a
// later pattern can override it for part of that tree. So
//
//	plaintext = ["Videos/", "!Videos/private/"]
//
// stores Videos in plaintext except Videos/private, which is encrypted, and
// a further "Videos/private/trailers/" would make that subdirectory
// plaintext again. (git cannot re-include a file below an excluded
// directory; here the last matching pattern always decides, whether it
// matched the path itself or one of its parent directories.)
//
// Matching is byte for byte: it is case-sensitive ("videos/" does not match
// "Videos") and does no Unicode normalisation, so a name typed as "é"
// (one code point) does not match a pattern written with "e" plus a
// combining accent, even though both look the same. "?" and "[...]" match
// one UTF-8 character.
//
// # Use from code
//
// Parse or Load a Config, then call Config.Policy.Decide(path, isDir) for
// each new entry; Decision.Rule says which pattern decided (nil: the
// default). Policy is immutable and safe for concurrent use. Decide does no
// allocation for paths up to 32 components deep and costs well under a
// microsecond for typical policies.
package config
