package fs

import (
	"bytes"
	"unsafe"

	"golang.org/x/sys/unix"
)

func unsafePointer(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }

// direntName returns the NUL-terminated name of a raw dirent.
func direntName(d *unix.Dirent) string {
	const nameOff = unsafe.Offsetof(unix.Dirent{}.Name)
	n := int(d.Reclen) - int(nameOff)
	if n > len(d.Name) {
		n = len(d.Name)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&d.Name[0])), n)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
