package layout

import "cryptpt/crypt"

// LostIV is a directory IV that a sync tool kept as a conflict copy
// ("~~diriv.sync-conflict-…", crypt.DirIVConflictMarker) when two devices
// each made one for the same directory. The entries made on the losing
// device are named under it; the mount shows them as conflict copies with
// its Marker, and fsck checks them so.
type LostIV struct {
	Marker string
	IV     *[crypt.DirIVSize]byte
}

// ReadLostIV reads the lost IV with marker in the directory open at dirfd,
// or returns nil: for "" (the name was no conflict copy of an IV), and for
// one that is missing or unusable, which then names nothing.
func ReadLostIV(dirfd int, marker string) *LostIV {
	if marker == "" {
		return nil
	}
	raw, err := ReadSmallFile(dirfd, crypt.DirIVName+marker)
	if err != nil {
		return nil
	}
	iv, err := crypt.ParseDirIV(raw)
	if err != nil {
		return nil
	}
	return &LostIV{marker, iv}
}
