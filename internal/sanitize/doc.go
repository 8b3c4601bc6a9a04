// Package sanitize owns the escaping of attacker-controlled text on its
// way out of vigil to places that interpret it: spreadsheets and
// terminals. Audit records are written by whoever the logs describe (a
// user agent, a folder name, a message id), so every CSV cell and every
// record-derived string printed for a person goes through here.
//
// HTML is not here: html/template escapes by context, and the pages carry
// a Content-Security-Policy. JSON is not here: encoding/json escapes it.
package sanitize
