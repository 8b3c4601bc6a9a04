// Package ui owns vigil's web interface, served by `vigil serve` under
// /ui/: server-rendered html/template pages with htmx for partial updates
// and charts drawn as SVG on the server. Everything it serves is embedded
// (templates, htmx, the stylesheet); it loads nothing from elsewhere and
// runs no inline script, so its Content-Security-Policy allows only its
// own origin's script and style.
//
// It does not read the journal, the index or detection itself: the server
// gives it a Data (the read models and the triage, rule and sink actions,
// each journaled by the server) and the API key store.
//
// # What it guarantees
//
//   - Deny by default: every page but the login form needs a session; a
//     session is made from a one-time login token (minted by the server,
//     printed at every start, valid once and for a short time) or an API
//     key, and carries the key's role. Viewers read, analysts also change
//     incident status and notes, admins also manage keys, sinks and rules.
//   - Session cookies are HttpOnly, SameSite=Strict, Secure under TLS, and
//     expire (idle and absolute limits); logout ends the session.
//   - Every state change is a POST carrying the session's CSRF token,
//     compared in constant time; cross-origin POSTs are refused outright.
//   - Each session has a request rate (429 past it), as each API key does.
//   - Log-derived strings reach the page only through html/template's
//     contextual escaping (HTML, attribute, URL and JS contexts alike);
//     chart SVG is built from numbers and escaped labels only.
package ui
