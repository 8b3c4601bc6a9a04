package ui

import (
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/appid"
)

var funcs = template.FuncMap{
	"t":           fmtTime,
	"tm":          fmtMinute,
	"dur":         fmtDur,
	"ingestChart": ingestChart,
	"detectChart": detectChart,
	"timesChart":  timesChart,
	"rowTimes":    rowTimes,
	"appName":     appName,
	"statusLabel": statusLabel,
	"path":        urlPath,
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func fmtMinute(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return d.Round(time.Hour).String()
	default:
		return strings.TrimSuffix(humanDur(d), " d") + " days"
	}
}

func appName(id string) string {
	if a, ok := appid.Lookup(id); ok {
		return a.Name
	}
	return ""
}

func statusLabel(s string) string {
	if s == "" {
		return "open"
	}
	return strings.ReplaceAll(s, "_", " ")
}

// urlPath escapes one path segment.
func urlPath(s string) string { return url.PathEscape(s) }
