package layout

import (
	"errors"
	"os"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// Steps of WriteFile, in order. A Hook sees each name after its step is done.
const (
	StepCreate  = "create"  // temp file created, empty (Prepare done)
	StepWrite   = "write"   // temp file holds all of data
	StepSync    = "sync"    // temp file fsynced
	StepClose   = "close"   // temp file closed
	StepRename  = "rename"  // temp file renamed (or linked) to its name
	StepSyncDir = "syncdir" // directory fsynced
)

// WriteOptions say how WriteFile writes.
type WriteOptions struct {
	// Perm is the mode of the new file.
	Perm uint32
	// NoReplace leaves an existing file alone: WriteFile fails with EEXIST
	// (errors.Is(err, fs.ErrExist)).
	NoReplace bool
	// Prepare, if set, is called with the temp file's fd before anything
	// is written, e.g. to give it an owner; its error fails the write.
	Prepare func(fd int) error
	// Hook, if set, is called after each step (StepCreate…). Only tests
	// set it: an error stops WriteFile right there, as if the process had
	// been killed, and nothing is cleaned up.
	Hook func(step string) error
}

// WriteFile makes name in the directory open at dirfd (O_PATH will do) hold
// data, atomically: see WriteFileFunc.
func WriteFile(dirfd int, name string, data []byte, o WriteOptions) error {
	return WriteFileFunc(dirfd, name, o, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteFileFunc makes name in the directory open at dirfd (O_PATH will do)
// hold what fill writes to f, atomically: fill writes a fresh temp file
// (crypt.TempName, open read-write), which is fsynced and renamed to name,
// then the directory is fsynced. A crash at any point leaves the old file
// or the new one under name, never a part of one, and perhaps a temp file;
// an error leaves no temp file. f is closed by WriteFileFunc.
func WriteFileFunc(dirfd int, name string, o WriteOptions, fill func(f *os.File) error) (err error) {
	tmp, err := crypt.TempName()
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, o.Perm)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	crashed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil && !crashed {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	step := func(name string) error {
		if o.Hook == nil {
			return nil
		}
		if e := o.Hook(name); e != nil {
			crashed = true
			return e
		}
		return nil
	}
	if o.Prepare != nil {
		if err := o.Prepare(fd); err != nil {
			return err
		}
	}
	if err := step(StepCreate); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := step(StepWrite); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := step(StepSync); err != nil {
		return err
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	if err := step(StepClose); err != nil {
		return err
	}
	if o.NoReplace {
		err = renameNoReplace(dirfd, tmp, name)
	} else {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		return err
	}
	if err := step(StepRename); err != nil {
		return err
	}
	if err := SyncDir(dirfd); err != nil {
		return err
	}
	return step(StepSyncDir)
}

// renameNoReplace renames tmp to name in dirfd unless name exists (EEXIST).
// Where the filesystem has no RENAME_NOREPLACE, a hard link does the same
// (tmp is then removed); where it has no hard links either, a check before
// a plain rename is the best there is.
func renameNoReplace(dirfd int, tmp, name string) error {
	err := unix.Renameat2(dirfd, tmp, dirfd, name, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS && err != unix.ENOTSUP {
		return err
	}
	err = unix.Linkat(dirfd, tmp, dirfd, name, 0)
	switch {
	case err == nil:
		return unix.Unlinkat(dirfd, tmp, 0)
	case err == unix.EEXIST:
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return unix.EEXIST
	}
	return unix.Renameat(dirfd, tmp, dirfd, name)
}

// SyncDir fsyncs the directory open at dirfd (O_PATH will do), so that a
// rename in it is durable. Filesystems that cannot fsync a directory
// (EINVAL, ENOTSUP) are tolerated, and so is a directory the caller may
// write but not read (the mount lends a new directory made with mode 0 only
// write and search permission for its IV): fsync needs an fd opened for
// reading, and the rename is atomic without it, only less durable.
func SyncDir(dirfd int) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		return nil
	}
	if err != nil {
		return err
	}
	err = unix.Fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	return err
}
