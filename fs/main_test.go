package fs_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"testing"
)

// TestMain fails the run if go-fuse was given an error that is not an
// errno.
func TestMain(m *testing.M) {
	// go-fuse logs an error that is not a syscall.Errno to the standard
	// logger, and answers ENOTSUP: every error must go through toErrno.
	var goFuseLog bytes.Buffer
	log.SetOutput(io.MultiWriter(os.Stderr, &goFuseLog))
	code := m.Run()
	if bytes.Contains(goFuseLog.Bytes(), []byte("can't convert error type")) {
		fmt.Fprintln(os.Stderr, "FAIL: go-fuse was given an error that is not an errno (logged above)")
		code = 1
	}
	os.Exit(code)
}
