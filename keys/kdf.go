package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDFParams are the Argon2id cost parameters stored in the vault config.
type KDFParams struct {
	Time      uint32 // passes over memory (Argon2 t)
	MemoryKiB uint32 // memory in KiB (Argon2 m)
	Threads   uint8  // lanes and threads (Argon2 p)
}

// Bounds on KDFParams, enforced by Create and by every parse of a config.
// The floor is OWASP's minimum for Argon2id (19 MiB, 2 passes): a config
// edited below it is refused as corrupt. The ceilings stop a tampered
// config from making Open hang or exhaust memory.
const (
	MinMemoryKiB = 19 * 1024       // 19 MiB
	MaxMemoryKiB = 4 * 1024 * 1024 // 4 GiB
	MinTime      = 2
	MaxTime      = 1024
	MinThreads   = 1
)

// MinKDF is the floor as parameters: 19 MiB, 2 passes, 1 thread, about
// 20 ms. Tests use it; so could a machine too small for DefaultKDF.
var MinKDF = KDFParams{Time: MinTime, MemoryKiB: MinMemoryKiB, Threads: MinThreads}

// DefaultKDF is what Create should be given in production: 64 MiB, 2 lanes,
// and a pass count that takes roughly 0.5-1 s on the machine it was tuned on.
//
// Measured on the development VM (2 vCPU AMD EPYC, Go 1.26, x/crypto v0.59.0,
// machine otherwise idle), best of 3-5 runs, with
// `go test -run='^$' -bench=BenchmarkArgon2id -benchtime=5x ./keys` and a
// best-of-N loop over argon2.IDKey:
//
//	m=64 MiB p=2 t=1:    23 ms
//	m=64 MiB p=2 t=8:   188 ms
//	m=64 MiB p=2 t=16:  350 ms
//	m=64 MiB p=2 t=24:  594 ms
//	m=64 MiB p=2 t=32:  773 ms   <- DefaultKDF
//	m=64 MiB p=4 t=32:  657 ms
//	m=64 MiB p=1 t=32: 1.38 s
//	m=256 MiB p=2 t=8:  796 ms
//	m=8 MiB  p=1 t=1:     4 ms   (the floor before format 2)
//	m=19 MiB p=1 t=2:    20 ms   (MinKDF, the floor since format 2)
//
// Cost is linear in t*m. With other jobs competing for the 2 cores the p=2
// figures grew 2-5x. Slower laptops may take 1.5-2 s.
var DefaultKDF = KDFParams{Time: 32, MemoryKiB: 64 * 1024, Threads: 2}

// check returns the dotted config field ("kdf.time") and the reason when p is
// out of bounds, or "", nil.
func (p KDFParams) check() (field string, err error) {
	switch {
	case p.Time < MinTime || p.Time > MaxTime:
		return "kdf.time", fmt.Errorf("%d out of range [%d, %d]", p.Time, MinTime, MaxTime)
	case p.MemoryKiB < MinMemoryKiB || p.MemoryKiB > MaxMemoryKiB:
		return "kdf.memory_kib", fmt.Errorf("%d out of range [%d, %d]", p.MemoryKiB, MinMemoryKiB, MaxMemoryKiB)
	case p.Threads < MinThreads:
		return "kdf.threads", fmt.Errorf("%d out of range [%d, 255]", p.Threads, MinThreads)
	}
	return "", nil
}

// atLeast reports whether p costs at least as much as q in both passes and
// memory, the two parameters an offline guess pays for.
func (p KDFParams) atLeast(q KDFParams) bool {
	return p.Time >= q.Time && p.MemoryKiB >= q.MemoryKiB
}

// MeasureKDF runs Argon2id once with p (on a dummy password) and returns
// how long it took: the cost of one password guess on this machine.
func MeasureKDF(p KDFParams) time.Duration {
	var salt [SaltSize]byte
	start := time.Now()
	k := passwordKey([]byte("cryptpt measure"), &salt, p)
	d := time.Since(start)
	clear(k[:])
	return d
}

// passwordKey derives the 32-byte password wrapping key with Argon2id.
func passwordKey(password []byte, salt *[SaltSize]byte, p KDFParams) [KeySize]byte {
	var k [KeySize]byte
	d := argon2.IDKey(password, salt[:], p.Time, p.MemoryKiB, p.Threads, KeySize)
	copy(k[:], d)
	clear(d)
	return k
}

// recoveryWrapKey derives the 32-byte recovery wrapping key from the 20
// recovery key bytes: HKDF-SHA256, empty salt, info "cryptpt recovery wrap v1".
func recoveryWrapKey(rk *[RecoveryKeySize]byte) ([KeySize]byte, error) {
	var k [KeySize]byte
	d, err := hkdf.Key(sha256.New, rk[:], nil, recoveryAD, KeySize)
	if err != nil {
		return k, err
	}
	copy(k[:], d)
	clear(d)
	return k, nil
}
