package token

import (
	"context"
	"testing"
)

func benchValidate(b *testing.B, alg string, k *testKey) {
	fx := getFixture(b)
	tok := sign(b, alg, k.priv, hdr(k), claimsFor(entIssuer(entTenant), entTenant))
	ctx := context.Background()
	if _, err := fx.main.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := fx.main.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
}

// Single goroutine: validations per second per core.
func BenchmarkValidateRS256(b *testing.B) { benchValidate(b, "RS256", getFixture(b).ent) }
func BenchmarkValidateES256(b *testing.B) { benchValidate(b, "ES256", getFixture(b).entEC) }
func BenchmarkValidateEdDSA(b *testing.B) { benchValidate(b, "EdDSA", getFixture(b).entEd) }

// Rejections must be cheap too: a flood of forged tokens is the attack.
func BenchmarkValidateRejectAlgNone(b *testing.B) {
	fx := getFixture(b)
	tok := sign(b, "none", nil, hdr(fx.ent, "alg", "none"), claimsFor(entIssuer(entTenant), entTenant))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fx.main.Validate(ctx, tok); err == nil {
			b.Fatal("accepted")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
}
