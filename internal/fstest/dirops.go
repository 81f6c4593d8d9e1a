package fstest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

// DirOps names the operations of DirOp, by its returned index.
var DirOps = [...]string{"create", "rename", "link", "unlink", "read"}

// DirOp does one random operation on names that pick chooses in one
// directory: an exclusive create with content starting "file " and then
// tag, a rename, a hard link, an unlink or a read that checks the content.
// It returns which operation ran and its error; ENOENT and EEXIST are the
// races callers expect, anything else is a bug.
func DirOp(rng *rand.Rand, pick func() string, tag string) (op int, err error) {
	op = rng.IntN(len(DirOps))
	switch op {
	case 0:
		var f *os.File
		if f, err = os.OpenFile(pick(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
			_, err = fmt.Fprintf(f, "file %s\n", tag)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	case 1:
		err = os.Rename(pick(), pick())
	case 2:
		err = os.Link(pick(), pick())
	case 3:
		err = os.Remove(pick())
	case 4:
		var data []byte
		if data, err = os.ReadFile(pick()); err == nil && len(data) > 0 && !strings.HasPrefix(string(data), "file ") {
			err = fmt.Errorf("read %q", data)
		}
	}
	return op, err
}
