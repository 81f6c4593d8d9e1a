package crypt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"

	"golang.org/x/crypto/hkdf"
)

// TestCrossCheck checks NewKeys, the block AD layout, the name encoding and
// SealMeta against answers computed by an independent implementation
// (testdata/cryptpt_crosscheck.txt).
func TestCrossCheck(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t, "cryptpt_crosscheck.txt") {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			master := (*[32]byte)(v.get(t, "master"))
			k, err := NewKeys(master)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case v.fields["contentkey"] != nil:
				for info, field := range map[string]string{infoContent: "contentkey", infoNames: "nameskey", infoMeta: "metakey"} {
					want := v.get(t, field)
					got := make([]byte, len(want))
					if _, err := io.ReadFull(hkdf.New(sha256.New, master[:], nil, []byte(info)), got); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s = %x, want %x", field, got, want)
					}
				}
			case v.fields["fileid"] != nil:
				h := &Header{Version: FormatV1, ID: *(*[16]byte)(v.get(t, "fileid"))}
				if v.fields["version"] != nil {
					h.Version = binary.BigEndian.Uint16(v.get(t, "version"))
				}
				bn := binary.BigEndian.Uint64(v.get(t, "blockno"))
				got, err := k.Content().DecryptBlock(nil, v.get(t, "sealed"), bn, h, false)
				if err != nil || !bytes.Equal(got, v.get(t, "plaintext")) {
					t.Fatalf("DecryptBlock = %x, %v", got, err)
				}
				if _, err := k.Content().DecryptBlock(nil, v.get(t, "sealed"), bn+1, h, false); err == nil {
					t.Fatal("DecryptBlock accepted the wrong block number")
				}
			case v.fields["diriv"] != nil:
				iv := (*[16]byte)(v.get(t, "diriv"))
				stored, sidecar, err := k.Names().Encrypt(iv, string(v.get(t, "plaintext")))
				if err != nil {
					t.Fatal(err)
				}
				full := string(v.get(t, "stored"))
				if long := v.fields["long"]; long != nil {
					if stored != string(long[0]) || string(sidecar) != full {
						t.Fatalf("Encrypt = %q, %q", stored, sidecar)
					}
				} else if stored != full || sidecar != nil {
					t.Fatalf("Encrypt = %q, %q; want %q", stored, sidecar, full)
				}
			default:
				got, err := k.OpenMeta(v.get(t, "sealed"), v.get(t, "ad"))
				if err != nil || !bytes.Equal(got, v.get(t, "plaintext")) {
					t.Fatalf("OpenMeta = %q, %v", got, err)
				}
			}
		})
	}
}
