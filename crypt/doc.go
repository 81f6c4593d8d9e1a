// Package crypt implements cryptpt's on-disk cryptography: key derivation,
// the encrypted content format, encrypted entry names and small encrypted
// metadata values.
//
// It works on byte slices and io interfaces only. It never touches FUSE,
// paths, the file system (beyond the Backing or Store passed in), TOML or
// the vault config; it never logs and never returns key material or
// plaintext names in errors.
//
// # Keys
//
// [NewKeys] derives three keys from the 256-bit master key with HKDF-SHA256
// (RFC 5869), salt nil:
//
//	info string           length  use
//	"cryptpt content v1"  32      AES-256-GCM, file content blocks
//	"cryptpt names v1"    64      AES-SIV-CMAC-512 (RFC 5297), entry names
//	"cryptpt meta v1"     32      AES-256-GCM, symlink targets and xattr values
//
// # Content file format (FormatV1 = 1, FormatVersion = 2)
//
// An empty file may be stored as 0 bytes (no header) or as a header alone.
// Otherwise the backing file is a header followed by blocks:
//
//	offset  size  field
//	0       4     magic "CPT\x00" (43 50 54 00)
//	4       2     format version, uint16 big-endian: 1 or 2
//	6       16    file ID, random
//	22            first block (HeaderSize = 4 + 2 + 16 = 22)
//
// The two formats differ only in the key and in trailing holes:
//
//	format 1: every block is sealed under the content key; a trailing
//	          all-zero block reads as a hole.
//	format 2: every block of a file is sealed under its file key,
//	          HKDF-SHA256(content key, salt nil, info "cryptpt file v2" ||
//	          file ID, 32 bytes); the last block is always stored sealed,
//	          so an all-zero last block is ErrAuth.
//
// Block n (0-based) starts at 22 + n*4124 ([CipherOffset]) and holds
// plaintext bytes [n*4096, (n+1)*4096):
//
//	offset  size       field
//	0       12         nonce, random per block and per write
//	12      len(P)     AES-256-GCM ciphertext of P (1..4096 bytes)
//	12+len  16         GCM tag
//
// BlockSize = 4096, BlockOverhead = 12 + 16 = 28, CipherBlockSize = 4124.
// Every block but the last holds exactly 4096 plaintext bytes; the last
// holds 1..4096. The GCM associated data of block n is exactly 24 bytes:
//
//	aData = blockNo (uint64 big-endian, 8 bytes) || fileID (16 bytes)
//
// so a block cannot be moved within a file or to another file.
//
// Size mapping ([CipherSize], [PlainSize]): plain 0 is stored in 0 bytes;
// otherwise cipher = 22 + full*4124 + (rem > 0 ? rem + 28 : 0) with
// full = plain/4096 and rem = plain%4096. Backing sizes 1..21 and sizes whose
// trailing partial block is 1..28 bytes are impossible ([ErrSize]); 22 is an
// empty file with a header.
//
// Worked sizes:
//
//	plaintext  backing
//	0          0
//	1          22 + 12 + 1 + 16 = 51
//	4096       22 + 4124 = 4146
//	4097       22 + 4124 + (12 + 1 + 16) = 4175
//
// Holes: a stored block made only of zero bytes (of any length, as a hole in
// a sparse backing file reads) decrypts to zeros of length len-28, as in
// gocryptfs. This keeps truncate-up and writes far past EOF O(1) on sparse
// file systems. Known limitation: an attacker who zeroes a whole aligned
// stored block makes it read as zeros instead of failing authentication.
//
// Any other block that fails to open yields an error wrapping [ErrAuth]
// naming the block number, and no bytes of that read are returned.
//
// Nonces are 96 random bits per block write. NIST SP 800-38D bounds a key
// with random nonces to 2^32 seals; in format 1 the whole vault shares one
// key (as in gocryptfs), in format 2 each file ID has its own, and a file
// gets a new ID whenever it is emptied and written again.
//
// The cost of format 2 (BenchmarkFormats, BenchmarkSmallFiles,
// BenchmarkFileKey): the file key of a file whose key is cached (the last
// 4096 file IDs used) is a map lookup, about 20 ns per request, within the
// noise of a 4 KiB or 128 KiB read or write; a file ID not in the cache
// costs one HKDF-SHA256 and an AES-256 key schedule, about 4-5 us, paid on
// a file's first block (about 5 us more for each new small file, next to
// the tens of microseconds of the FUSE round trip that creates it).
//
// # Entry names
//
// Each directory holds a file [DirIVName] ("~~diriv") with [DirIVSize] = 16
// random bytes. An encrypted entry named N (valid per [ValidName]) in that
// directory is stored as
//
//	"~~c" + base64url-nopad( AES-SIV(namesKey, AD = dirIV(16 bytes), N) )
//
// where AES-SIV output is V(16) || C(len(N)) as in RFC 5297 with a single
// associated-data component. Encryption is deterministic, so a lookup needs
// no directory scan, and authenticated, so a forged or moved name (to another
// directory) fails with [ErrAuth]. Plaintext names of up to 173 bytes fit in
// 255 bytes. When the "~~c" form is longer than 255 bytes the entry is stored
// as
//
//	"~~l" + base64url-nopad( SHA-256( "~~c..." form ) )     (46 bytes)
//
// and a sidecar file "~~n" + the same 43 hash characters ([SidecarName])
// holds the full "~~c..." form (bytes, no newline). Decrypt checks the
// sidecar against the hash, then decrypts it.
//
// Stored names with the reserved prefix "~~":
//
//	form               kind         meaning
//	"~~c" + b64        Encrypted    encrypted entry
//	"~~l" + b64(hash)  Long         encrypted entry with a long name
//	"~~n" + b64(hash)  Sidecar      full name of the matching "~~l" entry
//	"~~diriv"          DirIV        directory IV, 16 bytes
//	"~~vault.toml"     VaultConfig  vault config (package keys)
//	"~~t" + b64        Temp         temporary file
//	other "~~..."      Reserved     unknown, owned by cryptpt
//
// A sync tool's conflict copy of an Encrypted or Long entry is its stored
// name followed by a marker ".sync-conflict-YYYYMMDD-HHMMSS-DEVICE"
// (Syncthing's; see conflict.go). [Classify] gives it its base's kind (by
// the prefix) and [Names.Decrypt] refuses it; [SplitConflict] separates
// the base, whose name and sidecar are those of the entry it copies.
//
// Any name without the prefix is a plaintext-mode entry ([Plain]).
// [Classify] never returns Plain for a name with the prefix, so plaintext
// names starting with "~~" must be refused by the fs layer. A stored name is
// accepted only if re-encoding its decoded bytes reproduces it exactly (no
// padding, canonical trailing bits, no CR/LF, which encoding/base64 would
// silently skip), so each name has exactly one stored form.
//
// # Metadata values
//
// [Keys.SealMeta] seals symlink targets and xattr values as
// nonce(12) || AES-256-GCM ciphertext || tag(16) under the meta key, with
// the associated data of [SymlinkAD] and [XattrAD]: format 2 binds a value
// to its entry (a link's directory IV and name, a file's ID, a directory's
// IV), format 1 only to its kind.
//
// # Concurrency
//
// [Keys], [Content] and [Names] are safe for concurrent use. Content's
// file-level operations (ReadAt, WriteAt, Truncate) and [File] do no
// locking: the caller serialises writers to one file.
package crypt
