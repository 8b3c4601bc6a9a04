package ui

import (
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/appid"
	"github.com/vigil-audit/vigil/internal/incident"
)

var funcs = template.FuncMap{
	"t":           fmtTime,
	"tm":          fmtMinute,
	"rfc":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur":         fmtDur,
	"ingestChart": ingestChart,
	"detectChart": detectChart,
	"timesChart":  timesChart,
	"searchChart": searchChart,
	"first":       func(n int, rs []incident.MessageRead) []incident.MessageRead { return rs[:min(n, len(rs))] },
	"explained": func(rs []Reason) bool {
		return slices.ContainsFunc(rs, func(r Reason) bool { return r.Means != "" || r.Benign != "" })
	},
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
		return strconv.Itoa(int(d/time.Second)) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Round(time.Minute)/time.Minute)) + " min"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Round(time.Hour)/time.Hour)) + " h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
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
