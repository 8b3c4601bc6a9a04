package appid

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"strings"
	"sync"
)

//go:embed apps.csv
var appsCSV string

// App is one listed application.
type App struct {
	ID   string // lower-case GUID
	Name string
	Kind string // microsoft-first-party or microsoft-tenant-owned
}

var (
	loadOnce sync.Once
	byID     map[string]App
	loadErr  error
)

func load() {
	r := csv.NewReader(strings.NewReader(appsCSV))
	r.Comment = '#'
	r.FieldsPerRecord = 3
	rows, err := r.ReadAll()
	if err != nil {
		loadErr = fmt.Errorf("appid: apps.csv: %w", err)
		return
	}
	byID = make(map[string]App, len(rows))
	for i, row := range rows {
		if i == 0 {
			continue // header
		}
		id := strings.ToLower(row[0])
		if _, dup := byID[id]; dup {
			loadErr = fmt.Errorf("appid: apps.csv: id %s listed twice", id)
			return
		}
		byID[id] = App{ID: id, Name: row[1], Kind: row[2]}
	}
}

// Lookup returns the listed application with id (any case, surrounding
// braces or spaces ignored).
func Lookup(id string) (App, bool) {
	loadOnce.Do(load)
	a, ok := byID[strings.ToLower(strings.Trim(id, "{} "))]
	return a, ok
}

// All returns every listed application, and an error if the embedded
// table is malformed (tests check it; Lookup then finds nothing).
func All() ([]App, error) {
	loadOnce.Do(load)
	out := make([]App, 0, len(byID))
	for _, a := range byID {
		out = append(out, a)
	}
	return out, loadErr
}

// Label is how reports show an application id: "Name (id)" when the id is
// listed, the id alone otherwise.
func Label(id string) string {
	if a, ok := Lookup(id); ok {
		return a.Name + " (" + id + ")"
	}
	return id
}
