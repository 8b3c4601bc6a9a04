package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition (RFC 7515 §4.1.7), not a security hash
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vigil-audit/vigil/internal/collect"
)

// cache holds one token and refreshes it at 80% of its lifetime.
type cache struct {
	clock collect.Clock
	fetch func(ctx context.Context) (string, time.Duration, error)

	mu        sync.Mutex
	tok       string
	refreshAt time.Time
}

func (c *cache) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != "" && c.clock.Now().Before(c.refreshAt) {
		return c.tok, nil
	}
	tok, life, err := c.fetch(ctx)
	if err != nil {
		return "", err
	}
	c.tok, c.refreshAt = tok, c.clock.Now().Add(life*4/5)
	return tok, nil
}

func (c *cache) Invalidate() {
	c.mu.Lock()
	c.tok = ""
	c.mu.Unlock()
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"` // a number, or a string on older endpoints
}

// post sends a token request through a retrying client (5xx and 429 are
// retried) and returns the token and its lifetime.
func post(ctx context.Context, cl *collect.Client, tokenURL string, form url.Values) (string, time.Duration, error) {
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
	resp, err := cl.Do(ctx, http.MethodPost, tokenURL, []byte(form.Encode()), h)
	if err != nil {
		return "", 0, err
	}
	var tr tokenResponse
	if err := json.Unmarshal(resp.Body, &tr); err != nil || tr.AccessToken == "" {
		return "", 0, fmt.Errorf("token endpoint %s: response has no access_token", tokenURL)
	}
	secs := strings.Trim(string(tr.ExpiresIn), `"`)
	var n int64
	if _, err := fmt.Sscan(secs, &n); err != nil || n <= 0 {
		n = 3600
	}
	return tr.AccessToken, time.Duration(n) * time.Second, nil
}

// oauthError reads error / error_description / error_codes from a token
// endpoint's error body.
func oauthError(err error) (code, desc string) {
	var ae *collect.APIError
	if !errors.As(err, &ae) {
		return "", ""
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal([]byte(ae.Message), &body)
	return body.Error, body.Description
}

// Entra is an app registration using client credentials.
type Entra struct {
	LoginURL string // https://login.microsoftonline.com (no trailing slash)
	TenantID string
	ClientID string
	// Secret, or Certificate and Key (preferred).
	Secret      string
	Certificate *x509.Certificate
	Key         *rsa.PrivateKey
	// Client sends the token requests (no TokenSource of its own).
	Client *collect.Client
	Clock  collect.Clock
}

// TokenURL is the v2.0 token endpoint of the tenant.
func (e *Entra) TokenURL() string {
	return strings.TrimRight(e.LoginURL, "/") + "/" + url.PathEscape(e.TenantID) + "/oauth2/v2.0/token"
}

// Source returns a cached token source for scope (e.g.
// https://manage.office.com/.default).
func (e *Entra) Source(scope string) collect.TokenSource {
	return &cache{clock: e.Clock, fetch: func(ctx context.Context) (string, time.Duration, error) {
		form := url.Values{"client_id": {e.ClientID}, "scope": {scope}, "grant_type": {"client_credentials"}}
		if e.Key != nil {
			a, err := e.assertion()
			if err != nil {
				return "", 0, collect.Permanent(err, "check certificate_file and private_key_file")
			}
			form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			form.Set("client_assertion", a)
		} else {
			form.Set("client_secret", e.Secret)
		}
		tok, life, err := post(ctx, e.Client, e.TokenURL(), form)
		if err != nil {
			return "", 0, e.explain(err, scope)
		}
		return tok, life, nil
	}}
}

// explain turns a rejected token request into a permanent error that
// says what to fix.
func (e *Entra) explain(err error, scope string) error {
	var ae *collect.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("entra token for %s: %w", scope, err)
	}
	code, desc := oauthError(err)
	first, _, _ := strings.Cut(desc, "\r\n")
	msg := fmt.Errorf("entra token for %s: HTTP %d %s: %s", scope, ae.Status, code, first)
	switch {
	case strings.Contains(desc, "AADSTS90002") || strings.Contains(desc, "AADSTS900023"):
		return collect.Permanent(msg, "tenant_id "+e.TenantID+" is not a known Entra tenant")
	case strings.Contains(desc, "AADSTS700016"):
		return collect.Permanent(msg, "client_id "+e.ClientID+" is not registered in this tenant, or admin consent was not granted")
	case code == "invalid_client":
		if e.Key != nil {
			return collect.Permanent(msg, "upload the certificate to the app registration's Certificates & secrets")
		}
		return collect.Permanent(msg, "the client secret is wrong or expired; create a new one")
	case code == "invalid_scope":
		return collect.Permanent(msg, "check the cloud and scope settings")
	}
	return collect.Permanent(msg, "")
}

// assertion is a JWT signed with the certificate's key: aud the token
// endpoint, iss = sub = client id, a fresh jti, valid 10 minutes, with the
// certificate's thumbprints in x5t#S256 and x5t.
func (e *Entra) assertion() (string, error) {
	s256 := sha256.Sum256(e.Certificate.Raw)
	s1 := sha1.Sum(e.Certificate.Raw) //nolint:gosec // thumbprint
	opts := (&jose.SignerOptions{}).WithType("JWT").
		WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(s256[:])).
		WithHeader("x5t", base64.RawURLEncoding.EncodeToString(s1[:]))
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: e.Key}, opts)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	now := e.Clock.Now()
	cl := jwt.Claims{
		Issuer: e.ClientID, Subject: e.ClientID, Audience: jwt.Audience{e.TokenURL()},
		ID: randomID(), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
	}
	return jwt.Signed(sig).Claims(cl).Serialize()
}

// Google is a service account acting for a Workspace admin (domain-wide
// delegation).
type Google struct {
	TokenURL string // https://oauth2.googleapis.com/token
	Email    string // the service account's client_email
	KeyID    string
	Key      *rsa.PrivateKey
	Subject  string // the admin user impersonated
	Client   *collect.Client
	Clock    collect.Clock
}

// Source returns a cached token source for scopes (space-separated).
func (g *Google) Source(scopes string) collect.TokenSource {
	return &cache{clock: g.Clock, fetch: func(ctx context.Context) (string, time.Duration, error) {
		a, err := g.assertion(scopes)
		if err != nil {
			return "", 0, collect.Permanent(err, "check service_account_file")
		}
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a}}
		tok, life, err := post(ctx, g.Client, g.TokenURL, form)
		if err != nil {
			var ae *collect.APIError
			if !errors.As(err, &ae) {
				return "", 0, fmt.Errorf("google token: %w", err)
			}
			code, desc := oauthError(err)
			msg := fmt.Errorf("google token for %s as %s: HTTP %d %s: %s", g.Email, g.Subject, ae.Status, code, desc)
			switch code {
			case "unauthorized_client":
				return "", 0, collect.Permanent(msg, "in the Admin console, Security > API controls > Domain-wide delegation, allow the service account's client id the scope "+scopes)
			case "invalid_grant":
				return "", 0, collect.Permanent(msg, "subject "+g.Subject+" must be an existing admin user, and the key must be valid")
			}
			return "", 0, collect.Permanent(msg, "")
		}
		return tok, life, nil
	}}
}

func (g *Google) assertion(scopes string) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if g.KeyID != "" {
		opts = opts.WithHeader("kid", g.KeyID)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: g.Key}, opts)
	if err != nil {
		return "", fmt.Errorf("service account assertion: %w", err)
	}
	now := g.Clock.Now()
	claims := struct {
		jwt.Claims
		Scope string `json:"scope"`
	}{jwt.Claims{Issuer: g.Email, Subject: g.Subject, Audience: jwt.Audience{g.TokenURL},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, scopes}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

// ServiceAccount is the part of a Google service-account key file vigil
// reads.
type ServiceAccount struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	ClientID     string `json:"client_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	TokenURI     string `json:"token_uri"`
}

// LoadServiceAccount reads a service-account key file and its RSA key.
func LoadServiceAccount(path string) (*ServiceAccount, *rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, nil, fmt.Errorf("%s: not a service-account key file: %w", path, err)
	}
	if sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, nil, fmt.Errorf("%s: not a service-account key file (needs type service_account, client_email, private_key)", path)
	}
	key, err := parseRSAKey([]byte(sa.PrivateKey))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: private_key: %w", path, err)
	}
	return &sa, key, nil
}

// LoadCertificate reads a PEM certificate and a PEM RSA private key (the
// same file may hold both) and checks that they belong together.
func LoadCertificate(certFile, keyFile string) (*x509.Certificate, *rsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	var cert *x509.Certificate
	for rest := cb; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			if cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", certFile, err)
			}
			break
		}
	}
	if cert == nil {
		return nil, nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseRSAKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("%s does not hold the private key of the certificate in %s", keyFile, certFile)
	}
	return cert, key, nil
}

func parseRSAKey(b []byte) (*rsa.PrivateKey, error) {
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, errors.New("no PEM private key block")
		}
		switch blk.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, err
			}
			if rk, ok := k.(*rsa.PrivateKey); ok {
				return rk, nil
			}
			return nil, fmt.Errorf("private key is %T; Entra and Google assertions need RSA", k)
		}
	}
}

var _ crypto.Signer = (*rsa.PrivateKey)(nil)
