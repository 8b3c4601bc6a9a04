package event

import (
	"strings"
	"sync"
)

// Sym is an interned field name. Two names that differ only in letter case
// or in array markers ("Folders[].FolderItems[].InternetMessageId" and
// "folders.folderitems.internetmessageid") intern to the same Sym, because
// the same vendor field is spelled differently by different exports
// (Graph camelCase, Sentinel PascalCase) and by different rule authors.
type Sym uint32

var symtab = struct {
	sync.RWMutex
	ids   map[string]Sym
	names []string
}{ids: map[string]Sym{}, names: []string{""}}

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
	symtab.RLock()
	s, ok := symtab.ids[key]
	symtab.RUnlock()
	if ok {
		return s
	}
	symtab.Lock()
	defer symtab.Unlock()
	if s, ok := symtab.ids[key]; ok {
		return s
	}
	s = Sym(len(symtab.names))
	symtab.names = append(symtab.names, key)
	symtab.ids[key] = s
	return s
}

// String returns the canonical (lower-case) name of s.
func (s Sym) String() string {
	symtab.RLock()
	defer symtab.RUnlock()
	if int(s) < len(symtab.names) {
		return symtab.names[s]
	}
	return ""
}
