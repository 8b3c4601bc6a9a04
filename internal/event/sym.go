package event

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Sym is an interned field name. Two names that differ only in letter case
// or in array markers ("Folders[].FolderItems[].InternetMessageId" and
// "folders.folderitems.internetmessageid") intern to the same Sym, because
// the same vendor field is spelled differently by different exports
// (Graph camelCase, Sentinel PascalCase) and by different rule authors.
type Sym uint32

type symInfo struct {
	name  string // canonical
	first Sym    // the Sym of the name's first path segment (itself if none)
}

// symtab maps names to Syms. Readers use the published snapshot without
// locking; Intern appends under mu and republishes. Elements below a
// snapshot's length never change, so old snapshots stay valid.
var symtab = struct {
	mu   sync.RWMutex
	ids  map[string]Sym
	list []symInfo
	snap atomic.Pointer[[]symInfo]
}{ids: map[string]Sym{}, list: []symInfo{{}}}

func init() { publish() }

func publish() {
	l := symtab.list
	symtab.snap.Store(&l)
}

// CanonicalName returns the key a field name interns under.
func CanonicalName(name string) string {
	if strings.ContainsAny(name, "[]{}") {
		name = strings.NewReplacer("[]", "", "{}", "").Replace(name)
	}
	return strings.ToLower(name)
}

// Intern returns the Sym for name, creating it on first use.
func Intern(name string) Sym {
	key := CanonicalName(name)
	symtab.mu.RLock()
	s, ok := symtab.ids[key]
	symtab.mu.RUnlock()
	if ok {
		return s
	}
	symtab.mu.Lock()
	defer symtab.mu.Unlock()
	if symtab.snap.Load() == nil { // package-level Interns run before init
		publish()
	}
	return internLocked(key)
}

// maxDataSyms bounds the names records can add to the table: past it,
// a name seen for the first time in a record is kept on its field but not
// interned (Sym 0), so records whose keys are data (ids, addresses) cannot
// grow memory without end. Names rules or code look up are interned by
// Intern whatever the size.
var maxDataSyms = 1 << 20

// InternData is Intern for names found in records rather than asked for
// by rules or code: past maxDataSyms names it returns 0 for a new name.
func InternData(name string) Sym {
	key := CanonicalName(name)
	symtab.mu.RLock()
	s, ok := symtab.ids[key]
	n := len(symtab.list)
	symtab.mu.RUnlock()
	if ok {
		return s
	}
	if n >= maxDataSyms {
		return 0
	}
	return Intern(name)
}

func internLocked(key string) Sym {
	if s, ok := symtab.ids[key]; ok {
		return s
	}
	first := Sym(len(symtab.list))
	if seg, _, dotted := strings.Cut(key, "."); dotted {
		first = internLocked(seg)
	}
	s := Sym(len(symtab.list))
	symtab.list = append(symtab.list, symInfo{name: key, first: first})
	symtab.ids[key] = s
	publish()
	return s
}

// First returns the Sym of the first path segment of s's name.
func (s Sym) First() Sym { return s.info().first }

func (s Sym) info() symInfo {
	l := *symtab.snap.Load()
	if int(s) < len(l) {
		return l[s]
	}
	return symInfo{}
}

// String returns the canonical (lower-case) name of s.
func (s Sym) String() string { return s.info().name }
