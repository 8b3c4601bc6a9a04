package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/journal"
)

// loadRecord appends a MailItemsAccessed Bind of one message shaped as
// bench/loadgen pushes them.
func loadRecord(b []byte, seq int, now time.Time) []byte {
	u := seq % 500
	b = append(b, `{"CreationTime":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, `","Id":"bench-`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"1003200`...)
	b = strconv.AppendInt(b, int64(u), 16)
	b = fmt.Appendf(b, `","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.%d","UserId":"user%d@contoso.example",`, u%250+1, u)
	b = fmt.Appendf(b, `"AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"9199bf20-a13f-4107-85dc-02114787ef48","ClientIPAddress":"198.51.100.%d",`, u%250+1)
	b = fmt.Appendf(b, `"ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"MailboxGuid":"00000000-0000-0000-0000-%012d","MailboxOwnerUPN":"user%d@contoso.example",`, u, u)
	b = fmt.Appendf(b, `"OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OperationCount":1,"Folders":[{"FolderItems":[{"InternetMessageId":"<m%d@contoso.example>","SizeInBytes":%d}],"Id":"LgAAAAAfolder%d","Path":"\\Inbox"}]}`, u*1000+seq/500%200, 2000+seq%50000, u)
	return append(b, '\n')
}

// BenchmarkIngest measures push ingest as vigil serve runs it under
// bench/load.sh: a body of 5,000 MailItemsAccessed records decoded with
// detection's hot fields, appended to the journal and handed to detection
// (taken again at once, as detection does). It reports the process's CPU
// (user + system) per record.
func BenchmarkIngest(b *testing.B) {
	const batch = 5000
	dir := b.TempDir()
	j, err := journal.Open(b.Context(), filepath.Join(dir, "journal"), journal.Options{Logger: slog.New(slog.DiscardHandler), CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	h := NewHandoff(0, 0)
	in := NewIngester(j, filepath.Join(dir, "quarantine.jsonl"))
	in.Handoff, in.Hot = h, detectionHot(b)
	now := time.Now().UTC()
	bodies := make([][]byte, 8)
	seq := 0
	next := func(k int) []byte {
		body := bodies[k%len(bodies)][:0]
		for range batch {
			body = loadRecord(body, seq, now)
			seq++
		}
		bodies[k%len(bodies)] = body
		return body
	}
	b.ReportAllocs()
	b.ResetTimer()
	var cpu time.Duration
	var taken uint64
	for k := range b.N {
		b.StopTimer()
		body := next(k) // not counted
		from := j.Size()
		b.StartTimer()
		c := cpuNow()
		res, err := in.Ingest(b.Context(), bytes.NewReader(body), "push:bench")
		if err != nil || res.Accepted != batch {
			b.Fatalf("%+v, %v", res, err)
		}
		for i := from; i < j.Size(); i++ {
			if _, _, ok := h.Take(i); ok {
				taken++
			}
		}
		cpu += cpuNow() - c
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*batch), "cpu-µs/record")
	if taken != uint64(b.N*batch) {
		b.Fatalf("%d entries taken from the handoff, %d pushed", taken, b.N*batch)
	}
}

// cpuNow is the process's user + system CPU time.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
