package collect_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vigil-audit/vigil/internal/collect"
	"github.com/vigil-audit/vigil/internal/collect/auth"
	"github.com/vigil-audit/vigil/internal/collect/fake"
	"github.com/vigil-audit/vigil/internal/collect/o365"
)

// TestCertificateCredentials: the app authenticates with a JWT client
// assertion signed by its certificate's key (x5t#S256 checked by the fake
// token endpoint); tokens are refreshed before they expire over two days.
func TestCertificateCredentials(t *testing.T) {
	e := newEnv(t, 6, false)
	cert, key := fake.NewCert()
	e.srv.Secret, e.srv.Cert = "", cert
	w := publishUAL(e.srv, rand.New(rand.NewPCG(1, 1)), []string{"Audit.Exchange"}, 2)
	ent := &auth.Entra{LoginURL: e.srv.URL, TenantID: tenantID, ClientID: clientID, Certificate: cert, Key: key, Clock: e.local, Client: e.client(nil, nil)}
	cl := e.client(nil, ent.Source(e.srv.URL+"/.default"))
	src, err := o365.New("audit.exchange", e.srv.URL, tenantID, "", cl)
	if err != nil {
		t.Fatal(err)
	}
	cs := []*collect.Collector{e.collector(src, nil, cl)}
	runDays(t, e, cs, 2, time.Hour)
	checkUAL(t, e, w, cs)
	// One token per ~48 min (80% of an hour) over two days, not one per request.
	if n := e.srv.Stats().TokenRequests; n < 40 || n > 80 {
		t.Errorf("%d token requests in two days of hourly polls; want a refresh at 80%% of each hour's lifetime", n)
	}

	// Another certificate is refused, permanently, saying what to do.
	other, okey := fake.NewCert()
	ent = &auth.Entra{LoginURL: e.srv.URL, TenantID: tenantID, ClientID: clientID, Certificate: other, Key: okey, Clock: e.local, Client: e.client(nil, nil)}
	_, err = ent.Source(e.srv.URL + "/.default").Token(t.Context())
	if !collect.IsPermanent(err) || !strings.Contains(err.Error(), "upload the certificate") {
		t.Errorf("wrong certificate: %v; want a permanent error saying to upload the certificate", err)
	}
}

// TestPermanentErrors: bad credentials, an unknown tenant and missing
// permissions stop the source with an error naming what to fix; nothing
// is retried forever.
func TestPermanentErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env) *collect.Collector
		want  string
	}{
		{"wrong secret", func(e *env) *collect.Collector {
			e.srv.Secret = "another"
			return newO365(t, e, []string{"audit.exchange"}, nil)[0]
		}, "client secret is wrong or expired"},
		{"unknown tenant", func(e *env) *collect.Collector {
			e.srv.TenantID = "11111111-0000-4000-8000-000000000000"
			return newO365(t, e, []string{"audit.exchange"}, nil)[0]
		}, "is not a known Entra tenant"},
		{"no ActivityFeed.Read", func(e *env) *collect.Collector {
			e.srv.Deny = "o365"
			return newO365(t, e, []string{"audit.exchange"}, nil)[0]
		}, "permission ActivityFeed.Read"},
		{"no AuditLog.Read.All", func(e *env) *collect.Collector {
			e.srv.Deny = "graph"
			return newGraph(t, e, []string{"signins"})[0]
		}, "permission AuditLog.Read.All"},
		{"no IdentityRiskEvent.Read.All", func(e *env) *collect.Collector {
			e.srv.Deny = "graph"
			return newGraph(t, e, []string{"risk_detections"})[0]
		}, "IdentityRiskEvent.Read.All"},
		{"no domain-wide delegation", func(e *env) *collect.Collector {
			c := newGWS(t, e, []string{"login"}, nil)[0]
			e.srv.Subject = "someone-else@example.org"
			return c
		}, "Domain-wide delegation"},
		{"Reports API denied", func(e *env) *collect.Collector {
			e.srv.Deny = "gws"
			return newGWS(t, e, []string{"login"}, nil)[0]
		}, gwsScopeHint},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 7, false)
			c := tc.setup(e)
			err := c.Run(t.Context()) // returns only on a permanent error
			var pe *collect.PermanentError
			if !errors.As(err, &pe) {
				t.Fatalf("Run returned %v; want a permanent error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if s := c.Status(); s.State != "failed" || s.LastError == "" {
				t.Errorf("status %+v; want failed with the error", s)
			}
			if n := e.srv.Stats().Requests; n > 10 {
				t.Errorf("%d requests for a permanent error; it must not be retried", n)
			}
		})
	}
}

const gwsScopeHint = "admin.reports.audit.readonly"

// TestSecretsNeverLogged: with debug logging, neither the client secret
// nor any access token appears in the logs or the errors, through
// throttling, retries, token refreshes and failures.
func TestSecretsNeverLogged(t *testing.T) {
	e := newEnv(t, 8, false)
	e.srv.Faults = fake.Faults{Throttle: 0.2, ServerErr: 0.2, PageSize: 3}
	e.srv.TokenLife = 10 * time.Minute
	publishUAL(e.srv, rand.New(rand.NewPCG(2, 2)), []string{"Audit.Exchange"}, 1)
	publishGraph(e.srv, rand.New(rand.NewPCG(2, 3)), 1)
	cs := append(newO365(t, e, []string{"audit.exchange"}, nil), newGraph(t, e, []string{"signins"})...)
	var errs []string
	for i := 0; i < 24; i++ {
		for _, c := range cs {
			if err := c.Once(t.Context()); err != nil {
				errs = append(errs, err.Error())
			}
		}
		e.clock.Advance(time.Hour)
	}
	e.srv.Secret = "rotated" // now every token request fails
	e.srv.TokenLife = time.Second
	e.clock.Advance(time.Hour)
	for _, c := range cs {
		if err := c.Once(t.Context()); err != nil {
			errs = append(errs, err.Error())
		}
		errs = append(errs, c.Status().LastError)
	}
	text := e.logs.String() + strings.Join(errs, "\n")
	if !strings.Contains(text, "api request") || !strings.Contains(text, "invalid_client") {
		t.Fatalf("the logs and errors do not show the requests and the failure; the check would prove nothing")
	}
	if strings.Contains(text, secret) {
		t.Error("the client secret appears in the logs or errors")
	}
	for _, tok := range e.srv.IssuedTokens() {
		if strings.Contains(text, tok) {
			t.Fatalf("an access token appears in the logs or errors")
		}
	}
	if strings.Contains(strings.ToLower(text), "bearer ") {
		t.Error("an Authorization header appears in the logs or errors")
	}
}
