package behavior

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// codecSample has every field set, times in more than one zone, and the
// empty and nil shapes gob gives back.
func codecSample() []pending {
	paris := time.FixedZone("CET", 3600)
	t0 := time.Date(2026, 3, 1, 2, 3, 4, 567_890_123, time.UTC)
	return []pending{
		{Seq: 1, Due: t0.Add(time.Hour), Time: t0, Tenant: "t", User: "u@contoso.example", Mailbox: "m@contoso.example",
			AppID: "00000002-0000-0ff1-ce00-000000000000", ClientApp: "d3590ed6-52b3-4102-aeff-aad2292ab01c", IP: "2001:db8::1",
			UserAgent: "Mozilla/5.0 \"quoted\" \x00 \u00e9", Sessions: []string{"s1", "", "s3"}, Token: "tok", RecordID: "rec",
			Items: 50, Source: "o365", Operation: "MailItemsAccessed"},
		{Seq: 1 << 62, Due: t0.In(paris), Time: t0.In(paris).Add(-time.Minute), Items: -1},
		{},
	}
}

func TestChunkCodecRoundTrip(t *testing.T) {
	in := codecSample()
	body := encodeChunk(nil, in)
	got, err := decodeChunk(body)
	if err != nil {
		t.Fatal(err)
	}
	// gob is the reference: what the queue read back before.
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(in); err != nil {
		t.Fatal(err)
	}
	var want []pending
	if err := gob.NewDecoder(&buf).Decode(&want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%+v\nwant (as gob gives back)\n%+v", got, want)
	}
	if _, off := got[1].Due.Zone(); off != 3600 {
		t.Errorf("zone offset %d, want 3600", off)
	}
}

// A segment written by an earlier build (gob chunks) is still read: a
// saved state may name one.
func TestReadChunkGobAndBinary(t *testing.T) {
	in := codecSample()
	var gb bytes.Buffer
	if err := gob.NewEncoder(&gb).Encode(in); err != nil {
		t.Fatal(err)
	}
	var file []byte
	file = binary.LittleEndian.AppendUint32(file, uint32(gb.Len()))
	file = append(file, gb.Bytes()...)
	second := len(file)
	b := encodeChunk(make([]byte, 4), in[:1])
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4)|chunkBinary)
	file = append(file, b...)
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old, next, err := readChunk(f, 0)
	if err != nil || len(old) != 3 || next != int64(second) || old[0].UserAgent != in[0].UserAgent {
		t.Fatalf("gob chunk: %d accesses, next %d (want %d), err %v", len(old), next, second, err)
	}
	cur, next, err := readChunk(f, next)
	if err != nil || len(cur) != 1 || next != int64(len(file)) || !reflect.DeepEqual(cur[0], old[0]) {
		t.Fatalf("binary chunk: %+v, next %d, err %v", cur, next, err)
	}
}

// Damaged bodies are refused with the reason, never read as accesses.
func TestDecodeChunkRefusesDamage(t *testing.T) {
	body := encodeChunk(nil, codecSample())
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"cut", body[:len(body)-3], "ends inside an access"},
		{"trailing", append(append([]byte(nil), body...), 9), "bytes after the last"},
		{"huge count", binary.AppendUvarint(nil, 1<<40), "claims"},
		{"bad time", append(append(binary.AppendUvarint(binary.AppendUvarint(nil, 1), 7), 15), bytes.Repeat([]byte{99}, 40)...), "a time"},
	} {
		if got, err := decodeChunk(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %d accesses, err %v, want %q", tc.name, len(got), err, tc.want)
		}
	}
}

// FuzzDecodeChunk: any body decodes or is refused without panicking, and
// what decodes encodes back to the same bytes.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(encodeChunk(nil, codecSample()))
	f.Add(encodeChunk(nil, pendingStream(20, 9)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := decodeChunk(b)
		if err != nil {
			return
		}
		again, err := decodeChunk(encodeChunk(nil, ps))
		if err != nil || !reflect.DeepEqual(again, ps) {
			t.Fatalf("re-encoded chunk differs: %v", err)
		}
	})
}

// BenchmarkSpillChunk: a full tail written and read back.
func BenchmarkSpillChunk(b *testing.B) {
	in := pendingStream(pendingMem, 4)
	for i := range in {
		in[i].Tenant, in[i].AppID, in[i].IP, in[i].Token = "contoso", "00000002-0000-0ff1-ce00-000000000000", "203.0.113.7", strings.Repeat("t", 40)
		in[i].Operation, in[i].Source, in[i].RecordID = "MailItemsAccessed", "o365", strings.Repeat("r", 36)
	}
	for _, layout := range []string{"binary", "gob"} {
		b.Run(layout, func(b *testing.B) {
			for b.Loop() {
				if layout == "gob" {
					var buf bytes.Buffer
					if err := gob.NewEncoder(&buf).Encode(in); err != nil {
						b.Fatal(err)
					}
					var out []pending
					if err := gob.NewDecoder(&buf).Decode(&out); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if _, err := decodeChunk(encodeChunk(nil, in)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/access")
		})
	}
}
