package collect_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/auth"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/gws"
)

// publishGWS adds activities of each app every ~10 min: most visible in
// minutes, 10% inserted up to 90 minutes late into a range already polled
// (drive: up to 4 hours, its settle is 3 h), pairs of activities sharing
// a uniqueQualifier at different times, and activities the API lists twice.
func publishGWS(srv *fake.Server, rnd *rand.Rand, apps []string, days int) itemWorld {
	w := itemWorld{want: map[string]bool{}}
	end := t0.Add(time.Duration(days)*24*time.Hour - 5*time.Hour)
	n := 0
	for _, app := range apps {
		for t := t0.Add(time.Duration(rnd.IntN(600)) * time.Second); t.Before(end); t = t.Add(time.Duration(900+rnd.IntN(1800)) * time.Second) {
			n++
			uq := fmt.Sprintf("-%d", 1000000+n)
			lag := time.Duration(30+rnd.IntN(300)) * time.Second
			if rnd.IntN(10) == 0 {
				lag = time.Duration(20+rnd.IntN(70)) * time.Minute
				if app == "drive" {
					lag = time.Duration(60+rnd.IntN(180)) * time.Minute
				}
			}
			t := t.Truncate(time.Millisecond)
			it := &fake.Item{Raw: fake.Activity(app, uq, t, "carol@example.org"), Time: t, Available: t.Add(lag)}
			srv.AddActivity(app, it)
			w.want[gwsKey(it.Raw)] = true
			switch rnd.IntN(25) {
			case 0: // same uniqueQualifier, another time: a different activity
				t2 := t.Add(time.Second)
				it2 := &fake.Item{Raw: fake.Activity(app, uq, t2, "carol@example.org"), Time: t2, Available: t2.Add(lag)}
				srv.AddActivity(app, it2)
				w.want[gwsKey(it2.Raw)] = true
			case 1: // listed twice
				srv.AddActivity(app, it)
			}
		}
	}
	return w
}

func gwsKey(raw []byte) string {
	k, _ := (&gws.Source{}).Key(raw)
	return k
}

func newGWS(t *testing.T, e *env, apps []string, fault func(string) error) []*collect.Collector {
	t.Helper()
	if e.gkey == nil {
		_, e.gkey = fake.NewCert()
	}
	key := e.gkey
	e.srv.ServiceAccount, e.srv.ServiceKey, e.srv.Subject = "vigil@project.iam.gserviceaccount.com", &key.PublicKey, "admin@example.org"
	g := &auth.Google{TokenURL: e.srv.URL + "/token", Email: e.srv.ServiceAccount, KeyID: "k1", Key: key, Subject: "admin@example.org", Clock: e.local, Client: e.client(nil, nil)}
	tokens := g.Source(gws.Scope)
	lim := collect.NewLimiter(e.local, 100*time.Millisecond, 10)
	var out []*collect.Collector
	for _, app := range apps {
		cl := e.client(lim, tokens)
		src, err := gws.New(app, e.srv.URL, "C0123abcd", cl)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.collector(src, fault, cl))
	}
	return out
}

// TestT3Workspace: ten days of Reports API polling with newest-first
// pages, late inserts into ranges already read, activities sharing a
// uniqueQualifier, activities listed twice and 503 quota errors.
func TestT3Workspace(t *testing.T) {
	e := newEnv(t, 3, false)
	e.srv.Faults = fake.Faults{Throttle: 0.1, ServerErr: 0.03, EmptyPage: 0.05, PageSize: 6}
	apps := []string{"login", "drive", "token"}
	w := publishGWS(e.srv, rand.New(rand.NewPCG(5, 6)), apps, 10)
	cs := newGWS(t, e, apps, nil)
	runDays(t, e, cs, 10, time.Hour)
	st := checkItems(t, e, w, gwsKey, cs)
	// The only gaps allowed: sources going quiet once publishing stops.
	checkOnlySilentAfter(t, st.gaps, t0.Add(10*24*time.Hour-5*time.Hour-4*time.Hour))
	if e.srv.Stats().Throttled == 0 {
		t.Error("503s were not exercised")
	}
	dups := int64(0)
	for _, c := range cs {
		dups += c.Status().Duplicates
	}
	if dups == 0 {
		t.Error("no duplicates counted, though activities are listed twice and windows overlap")
	}
}
