package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

var errNoViews = errors.New("detection is not running")

func (s *Server) views(w http.ResponseWriter) (Views, bool) {
	if s.d.Views == nil {
		writeError(w, http.StatusServiceUnavailable, errNoViews.Error())
		return nil, false
	}
	return s.d.Views, true
}

// parseSince reads ?since= as RFC 3339 or a duration back from now ("24h").
func parseSince(r *http.Request) (time.Time, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, errors.New("since: want an RFC 3339 time or a duration such as 24h")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.d.Views == nil {
		writeError(w, http.StatusServiceUnavailable, errNoViews.Error())
		return
	}
	if err := s.d.Views.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "journal_entries": s.d.Journal.Size(), "detection_lag": s.lag()})
}

func (s *Server) incidents(w http.ResponseWriter, r *http.Request) {
	v, ok := s.views(w)
	if !ok {
		return
	}
	since, err := parseSince(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sev := r.URL.Query().Get("severity")
	switch sev {
	case "", "critical", "high", "medium", "low", "info", "informational":
	default:
		writeError(w, http.StatusBadRequest, "severity: want critical, high, medium, low or info")
		return
	}
	out, err := v.Incidents(since, sev)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": nonNil(out)})
}

func (s *Server) incident(w http.ResponseWriter, r *http.Request) {
	v, ok := s.views(w)
	if !ok {
		return
	}
	inc, found, err := v.IncidentByID(r.PathValue("id"))
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !found:
		writeError(w, http.StatusNotFound, "no such incident")
	default:
		writeJSON(w, http.StatusOK, inc)
	}
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	v, ok := s.views(w)
	if !ok {
		return
	}
	since, err := parseSince(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := v.Alerts(since)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": nonNil(out)})
}

func (s *Server) sources(w http.ResponseWriter, _ *http.Request) {
	v, ok := s.views(w)
	if !ok {
		return
	}
	out, err := v.Sources()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": nonNil(out)})
}

func nonNil(v []json.RawMessage) []json.RawMessage {
	if v == nil {
		return []json.RawMessage{}
	}
	return v
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp := s.d.Journal.Latest()
	if cp.Size < s.d.Journal.Size() || cp.Note == nil {
		var err error
		if cp, err = s.d.Journal.Checkpoint(r.Context()); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"origin": cp.Origin, "size": cp.Size, "root": b64(cp.Root[:]),
		"checkpoint": string(cp.Note), "verifier_key": s.d.Journal.VerifierKey(),
	})
}

// proof answers /api/v1/proof?index=N: an RFC 6962 inclusion proof of
// entry N in the tree of the latest checkpoint, as `vigil prove --json`.
func (s *Server) proof(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "index: want a journal entry number")
		return
	}
	cp := s.d.Journal.Latest()
	if cp.Size <= i {
		if cp, err = s.d.Journal.Checkpoint(r.Context()); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	if i >= cp.Size {
		writeError(w, http.StatusNotFound, "the journal holds "+strconv.FormatUint(cp.Size, 10)+" entries")
		return
	}
	leaf, err := s.d.Journal.LeafHash(i)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	p, err := s.d.Journal.InclusionProof(i, cp.Size)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	hashes := make([]string, len(p))
	for k, h := range p {
		hashes[k] = b64(h[:])
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"index": i, "tree_size": cp.Size, "leaf_hash": b64(leaf[:]), "root": b64(cp.Root[:]),
		"proof": hashes, "checkpoint": string(cp.Note), "verifier_key": s.d.Journal.VerifierKey(),
	})
}
