// Package event owns vigil's normalized audit event: the small set of
// fields every detection and report relies on (time, tenant, source,
// operation, actor, client, session/token, mail target), plus the
// original record's fields flattened to dotted names, and the record's
// bytes verbatim.
//
// Field access is the hot path of detection, so names are interned once
// into Syms (case-insensitive, "[]"/"{}" array markers ignored) and every
// event keeps its flattened fields sorted by Sym: a lookup is a binary
// search over a few dozen integers and allocates nothing. Events are built
// by a Builder, one per decoding goroutine, or flattened lazily on the
// first lookup the decoder's shortcuts cannot answer: the names rules look
// up, read by path from the decoder's parse (Walk), and the names the
// record lacks (top-level keys, Missing).
//
// This package decodes no vendor format itself; the source packages do,
// and describe here only what they found.
package event
