package journal

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeEntry: DecodeEntry reads entries from the network (the
// cluster's stream). Whatever it accepts must survive the journal's own
// re-encoding unchanged, since the journal stores and hashes the
// re-encoded entry. (Accepted input need not be canonical: overlong
// varints decode, and the journal stores the canonical form.)
func FuzzDecodeEntry(f *testing.F) {
	e := Entry{Source: "m365.ual", Origin: "push:127.0.0.1:1 @VIGIL_RAW:7", Received: time.Unix(1, 2), RecordID: "id", Raw: []byte(`{"Id":"id"}`)}
	f.Add(EncodeEntry(nil, &e))
	f.Add([]byte{})
	f.Add([]byte{entryVersion, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		enc := EncodeEntry(nil, &e)
		e2, err := DecodeEntry(enc)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if e2.Source != e.Source || e2.Origin != e.Origin || !e2.Received.Equal(e.Received) || e2.RecordID != e.RecordID || !bytes.Equal(e2.Raw, e.Raw) {
			t.Fatalf("entry changed through re-encoding:\n%+v\n%+v", e, e2)
		}
		if again := EncodeEntry(nil, &e2); !bytes.Equal(again, enc) {
			t.Fatal("encoding is not stable")
		}
	})
}
