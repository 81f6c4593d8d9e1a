package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"
	"cryptpt/layout"
)

var allSteps = []string{layout.StepCreate, layout.StepWrite, layout.StepSync, layout.StepClose, layout.StepRename, layout.StepSyncDir}

// errCrash is returned by a test hook to stop writeConfig where it is, as if
// the process had been killed: no cleanup runs.
var errCrash = errors.New("simulated crash")

// crashAt returns a hook that simulates a kill right after step.
func crashAt(step string) hookFunc {
	return func(s string) error {
		if s == step {
			return errCrash
		}
		return nil
	}
}

// TestCrashDuringRewrite stops ChangePassword and ResetPassword after each
// step of the atomic write, as a kill would, and checks that the config on
// disk opens with the old or the new password (old before the rename, new
// from it on), that the master key and recovery key are intact, and that a
// later change still works despite the leftover temp file.
func TestCrashDuringRewrite(t *testing.T) {
	t.Parallel()
	ops := []struct {
		name string
		run  func(dir, rk string, hook hookFunc) error
	}{
		{"change", func(dir, _ string, hook hookFunc) error {
			return changePassword(dir, []byte("old"), []byte("new"), MinKDF, hook)
		}},
		{"reset", func(dir, rk string, hook hookFunc) error {
			return resetPassword(dir, []byte(rk), []byte("new"), MinKDF, hook)
		}},
	}
	for _, op := range ops {
		for i, step := range allSteps {
			t.Run(op.name+"/after "+step, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				master, rk := newTestVault(t, dir, "old")
				if err := op.run(dir, rk, crashAt(step)); !errors.Is(err, errCrash) {
					t.Fatalf("hook not reached: %v", err)
				}

				vOld, errOld := Open(dir, []byte("old"))
				vNew, errNew := Open(dir, []byte("new"))
				renamed := i >= 4 // stepRename and later
				switch {
				case errOld == nil && errNew == nil:
					t.Fatal("both passwords open")
				case errOld != nil && errNew != nil:
					t.Fatalf("neither password opens: old %v, new %v", errOld, errNew)
				case renamed && errNew != nil:
					t.Fatalf("new password fails after the rename: %v", errNew)
				case !renamed && errOld != nil:
					t.Fatalf("old password fails before the rename: %v", errOld)
				}
				v := vOld
				if v == nil {
					v = vNew
				}
				if *v.Master() != master {
					t.Fatal("master key changed")
				}
				if rv, err := OpenWithRecoveryKey(dir, []byte(rk)); err != nil || *rv.Master() != master {
					t.Fatalf("recovery key after crash: %v", err)
				}

				// A temp file may be left behind; it must not disturb anything.
				temps := 0
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), crypt.TempPrefix) {
						temps++
					}
				}
				if renamed && temps != 0 {
					t.Errorf("%d temp files after rename", temps)
				}
				cur := "old"
				if renamed {
					cur = "new"
				}
				if err := changePassword(dir, []byte(cur), []byte("third"), MinKDF, nil); err != nil {
					t.Fatalf("change after crash: %v", err)
				}
				if _, err := Open(dir, []byte("third")); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestCrashDuringCreate: a crash before the link leaves no config (the
// directory is not a vault yet), one after it leaves a complete config.
func TestCrashDuringCreate(t *testing.T) {
	t.Parallel()
	for i, step := range allSteps {
		t.Run("after "+step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, _, err := create(dir, []byte("pw"), MinKDF, crashAt(step)); !errors.Is(err, errCrash) {
				t.Fatalf("hook not reached: %v", err)
			}
			_, err := Open(dir, []byte("pw"))
			if i < 4 {
				if !errors.Is(err, ErrNotVault) {
					t.Fatalf("before link: %v, want ErrNotVault", err)
				}
				// Creating again works despite the leftover temp file.
				newTestVault(t, dir, "pw")
				return
			}
			if err != nil {
				t.Fatalf("after link: %v", err)
			}
		})
	}
}

// TestWriteConfigErrorCleansUp: an ordinary error (not a crash) removes the
// temp file: here the rename fails, as a directory holds the config's name.
func TestWriteConfigErrorCleansUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, crypt.VaultConfigName), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeConfig(dir, []byte("x"), false, nil); err == nil {
		t.Fatal("writeConfig replaced a directory")
	}
	assertNoTemp(t, dir)
	if st, err := os.Stat(filepath.Join(dir, crypt.VaultConfigName)); err != nil || !st.IsDir() {
		t.Fatalf("config name changed: %v", err)
	}
}
