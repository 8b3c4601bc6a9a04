package source

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/detect/sigma"
	"github.com/vigil-audit/vigil/internal/event"
	"github.com/vigil-audit/vigil/rules"
)

// mailAccessInput writes about size bytes of MailItemsAccessed Bind
// records in the Management Activity API shape, each listing items
// FolderItems in all (drawn from lo-hi) over one to three folders, as
// bench/genual --folder-items does.
func mailAccessInput(size, lo, hi int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	rnd := func(b []byte, n int) []byte {
		for range n {
			b = append(b, b64[r.IntN(64)])
		}
		return b
	}
	paths := []string{`\\Inbox`, `\\Sent Items`, `\\Archive`, `\\Inbox\\Projects`}
	var buf bytes.Buffer
	var b []byte
	for i := 0; buf.Len() < size; i++ {
		user := "user" + strconv.Itoa(i%500) + "@contoso.com"
		b = append(b[:0], `{"CreationTime":"2026-01-05T10:`...)
		b = append(b, strconv.Itoa(10+i%50)...)
		b = append(b, `:00","Id":"`...)
		b = rnd(b, 36)
		b = append(b, `","Operation":"MailItemsAccessed","OrganizationId":"11111111-2222-3333-4444-555555555555","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032002A1B2C3D4","UserType":0,"Version":1,"Workload":"Exchange","UserId":"`...)
		b = append(b, user...)
		b = append(b, `","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"9199bf20-a13f-4107-85dc-02114787ef48","ClientIPAddress":"203.0.113.`...)
		b = strconv.AppendInt(b, int64(i%250), 10)
		b = append(b, `","ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1","MailboxGuid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","MailboxOwnerSid":"S-1-5-21-1","MailboxOwnerUPN":"`...)
		b = append(b, user...)
		b = append(b, `","OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR01MB0000 (15.20.6500.000)\r\n","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"SessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","AppAccessContext":{"AADSessionId":"f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f","IssuedAtTime":"2026-01-05T10:00:01","UniqueTokenId":"`...)
		b = rnd(b, 22)
		b = append(b, `"},"Folders":[`...)
		total := lo + r.IntN(hi-lo+1)
		nf := 1 + r.IntN(3)
		done := 0
		for f := range nf {
			if f > 0 {
				b = append(b, ',')
			}
			n := total / nf
			if f == nf-1 {
				n = total - done
			}
			done += n
			b = append(b, `{"FolderItems":[`...)
			for j := range n {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"Id":"RgAAAAA`...)
				b = rnd(b, 40)
				b = append(b, `AAA","InternetMessageId":"<BN3PR11MB`...)
				b = rnd(b, 12)
				b = append(b, `@BN3PR11MB4321.namprd11.prod.outlook.com>","SizeInBytes":`...)
				b = strconv.AppendInt(b, int64(2000+r.IntN(200000)), 10)
				b = append(b, '}')
			}
			b = append(b, `],"Id":"LgAAAAA`...)
			b = rnd(b, 57)
			b = append(b, `AQ","Path":"`...)
			b = append(b, paths[r.IntN(len(paths))]...)
			b = append(b, `"}`...)
		}
		b = append(b, `],"OperationCount":`...)
		b = strconv.AppendInt(b, int64(total), 10)
		b = append(b, "}\n"...)
		buf.Write(b)
	}
	return buf.Bytes()
}

// huntRules compiles what `vigil hunt --rules` would: the built-in rules
// plus the SigmaHQ m365 rules from the shared data, when present.
func huntRules(b *testing.B) *sigma.Ruleset {
	c := sigma.NewCompiler(sigma.Options{})
	if err := c.AddFS(rules.FS, "."); err != nil {
		b.Fatal(err)
	}
	if dir := "../../../shared/data/sigmahq-sigma/rules/cloud/m365"; dirExists(dir) {
		if err := c.AddFS(os.DirFS(dir), "."); err != nil {
			b.Fatal(err)
		}
	} else {
		b.Logf("no SigmaHQ rules at %s: built-in rules only", dir)
	}
	rs, _ := c.Compile()
	return rs
}

func dirExists(d string) bool { st, err := os.Stat(d); return err == nil && st.IsDir() }

// BenchmarkHuntMailAccess is the hunt's hot path on MailItemsAccessed
// records carrying 10-50 folder items (about 6 KB each): decode on the
// default workers, match every event against the hunt's rules, and keep
// what the impact assessment reads (folders, message ids).
func BenchmarkHuntMailAccess(b *testing.B) {
	in := mailAccessInput(16<<20, 10, 50)
	rs := huntRules(b)
	hot := rs.FieldSyms()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var n, ids int64
	cpu0 := cpuTime()
	for b.Loop() {
		st, err := ReadPaths(context.Background(), []string{"-"}, Options{Stdin: bytes.NewReader(in), Hot: hot}, func(e *event.Event) error {
			rs.Match(e, func(sigma.Detection) {})
			ids += int64(len(e.MessageIDs))
			return nil
		})
		if err != nil || st.Quarantined > 0 {
			b.Fatal(err, st.Quarantined)
		}
		n += st.Events
	}
	if ids == 0 {
		b.Fatal("no message ids decoded")
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	// On a shared machine wall time says little; CPU time spent per byte
	// (all goroutines) is steadier.
	b.ReportMetric(float64(len(in))*float64(b.N)/1e6/(cpuTime()-cpu0).Seconds(), "MB/cpu-s")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
