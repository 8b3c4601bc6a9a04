package graph

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
)

type nopSink struct{ collect.Sink }

// TestFilter: dates unquoted (the quoted form is refused with "Invalid
// filter clause"), the event type only on beta.
func TestFilter(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+" "+r.URL.Query().Get("$filter"))
		_, _ = w.Write([]byte(`{"value":[]}`))
	}))
	defer srv.Close()
	win := collect.Window{Start: time.Date(2024, 1, 13, 14, 13, 32, 0, time.UTC), End: time.Date(2024, 1, 14, 0, 0, 0, 0, time.UTC)}
	for _, name := range []string{"signins", "signins.noninteractive", "directory_audits", "risk_detections"} {
		s, err := New(name, srv.URL, &collect.Client{Clock: collect.SystemClock{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Fetch(t.Context(), win, nopSink{}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"/v1.0/auditLogs/signIns createdDateTime ge 2024-01-13T14:13:32Z and createdDateTime le 2024-01-14T00:00:00Z",
		"/beta/auditLogs/signIns (signInEventTypes/any(t: t eq 'nonInteractiveUser')) and createdDateTime ge 2024-01-13T14:13:32Z and createdDateTime le 2024-01-14T00:00:00Z",
		"/v1.0/auditLogs/directoryAudits activityDateTime ge 2024-01-13T14:13:32Z and activityDateTime le 2024-01-14T00:00:00Z",
		"/v1.0/identityProtection/riskDetections detectedDateTime ge 2024-01-13T14:13:32Z and detectedDateTime le 2024-01-14T00:00:00Z",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
