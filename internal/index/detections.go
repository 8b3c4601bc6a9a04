package index

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-audit/vigil/internal/alert"
	"github.com/vigil-audit/vigil/internal/incident"
)

// Incident statuses: the last change detection reported, as the sinks
// name them.
const (
	StatusOpened          = "opened"
	StatusGrew            = "grew"
	StatusSeverityChanged = "severity_changed"
	StatusImpactChanged   = "impact_changed"
	// StatusMerged: the incident's alerts all belong to other incidents
	// now (the grouping chained them to a later actor).
	StatusMerged = "merged"
	// StatusDissolved: the grouping no longer names the incident and it did
	// not merge (its alerts no longer make an incident, e.g. the address
	// they shared turned out to be shared by many users). Its alerts keep
	// naming it: they were its alerts.
	StatusDissolved = "dissolved"
	// StatusReturned: a grouping names again an incident that had merged
	// or dissolved, in its state then.
	StatusReturned = "returned"
)

// IncidentUpdate is one incident as detection last reported it.
type IncidentUpdate struct {
	Status   string // one of the statuses above but merged
	Incident *incident.Incident
	// AlertIDs name the incident's alerts (alert.ID) when Incident.Alerts
	// is not carried: detection ran on another node (docs/scale.md).
	AlertIDs []string
}

// PutDetections writes alerts (a row each, once: an alert already there
// is left as it is) and incidents (one row per id, replaced by its latest
// state; its alerts' incident column names it). Alerts are linked to the
// event they were raised on through their record id; those whose event is
// not indexed yet are linked by the Update that indexes it.
//
// current, when not nil, is every incident of detection's grouping after
// the updates in incs: incidents it does not name are marked dissolved
// (unless they merged), and those it names again after they merged or
// dissolved are written back in their current state, as returned.
func (x *Index) PutDetections(ctx context.Context, alerts []alert.Alert, incs []IncidentUpdate, current []*incident.Incident) error {
	if x.readOnly {
		return errors.New("index: opened read-only")
	}
	if len(alerts) == 0 && len(incs) == 0 && current == nil {
		return nil
	}
	x.detMu.Lock()
	defer x.detMu.Unlock()
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("index: detections: %w", err)
	}
	defer tx.Rollback()
	if err := x.putAlerts(ctx, tx, alerts); err != nil {
		return err
	}
	if err := x.putIncidents(ctx, tx, incs); err != nil {
		return err
	}
	if current != nil {
		if err := x.putGrouping(ctx, tx, current); err != nil {
			return err
		}
	}
	if len(alerts) > 0 {
		ids := make([]string, len(alerts))
		for i := range alerts {
			ids[i] = alerts[i].ID()
		}
		if err := linkAlerts(ctx, tx, 0, ids); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: detections: %w", err)
	}
	return nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return str(s)
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// firstActor is the alert's first identifier of a kind.
func firstActor(a *alert.Alert, k alert.ActorKind) string {
	for _, ac := range a.Actors {
		if ac.Kind == k {
			return ac.Value
		}
	}
	return ""
}

// alertColumns are the alerts table's columns in order, with their types,
// for reading a staged batch.
const alertColumns = `{'id': 'VARCHAR', 'idx': 'UBIGINT', 'sub': 'INTEGER', 'time': 'TIMESTAMP', 'raised': 'TIMESTAMP',
	'rule': 'VARCHAR', 'title': 'VARCHAR', 'level': 'VARCHAR', 'level_rank': 'TINYINT', 'tenant': 'VARCHAR', 'source': 'VARCHAR',
	'op': 'VARCHAR', 'record_id': 'VARCHAR', 'actor': 'VARCHAR', 'mailbox': 'VARCHAR', 'ip': 'VARCHAR', 'ip_hi': 'UBIGINT',
	'ip_lo': 'UBIGINT', 'session': 'VARCHAR', 'token': 'VARCHAR', 'app': 'VARCHAR', 'client_app': 'VARCHAR', 'incident': 'VARCHAR'}`

// stageCSV writes rows to a CSV file beside the database and returns the
// read_csv call that reads them back with the given columns; the file is
// removed by the returned function. The engine loads a batch this way
// hundreds of times faster than one prepared INSERT per row.
func (x *Index) stageCSV(name string, rows [][]string, cols string) (string, func(), error) {
	path := filepath.Join(x.path, name+".staging.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", nil, fmt.Errorf("index: staging %s: %w", name, err)
	}
	done := func() { os.Remove(path) }
	bw := bufio.NewWriter(f)
	cw := csv.NewWriter(bw)
	err = cw.WriteAll(rows)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, fmt.Errorf("index: staging %s: %w", name, err)
	}
	return fmt.Sprintf(`read_csv('%s', columns = %s, header = false, delim = ',', quote = '"', escape = '"', new_line = '\n', auto_detect = false, strict_mode = true)`,
		strings.ReplaceAll(path, "'", "''"), cols), done, nil
}

func (x *Index) putAlerts(ctx context.Context, tx *sql.Tx, alerts []alert.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(alerts))
	rows := make([][]string, 0, len(alerts))
	for i := range alerts {
		a := &alerts[i]
		id := a.ID()
		if seen[id] {
			continue
		}
		seen[id] = true
		ip := a.IP
		if ip == "" {
			ip = firstActor(a, alert.ActorIP)
		}
		hi, lo := "", ""
		if h, l, ok := ipKey(ip); ok {
			hi, lo = u64(h), u64(l)
		}
		rows = append(rows, []string{id, "", "", tm(a.Time), tm(a.Raised), str(a.Signal), str(a.Title), a.Level.String(), strconv.Itoa(int(a.Level)),
			str(a.Tenant), str(a.Source), str(a.Operation), str(a.RecordID()),
			str(strings.ToLower(a.User)), str(strings.ToLower(a.Mailbox)), str(ip), hi, lo,
			str(firstActor(a, alert.ActorSession)), str(firstActor(a, alert.ActorToken)),
			str(strings.ToLower(firstActor(a, alert.ActorApp))), str(strings.ToLower(firstActor(a, alert.ActorClientApp))), ""})
	}
	src, done, err := x.stageCSV("alerts", rows, alertColumns)
	if err != nil {
		return err
	}
	defer done()
	// A replay writes ids already there: those rows stay as they are.
	if _, err := tx.ExecContext(ctx, `INSERT INTO alerts SELECT * FROM `+src+` ON CONFLICT (id) DO NOTHING`); err != nil {
		return fmt.Errorf("index: alerts: %w", err)
	}
	return nil
}

func (x *Index) putIncidents(ctx context.Context, tx *sql.Tx, incs []IncidentUpdate) error {
	if len(incs) == 0 {
		return nil
	}
	// One row per id: the last update of the batch.
	last := map[string]int{}
	for i, u := range incs {
		last[u.Incident.ID] = i
	}
	st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::VARCHAR[], ?::VARCHAR[], ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("index: incidents: %w", err)
	}
	defer st.Close()
	// Each alert belongs to the incident that named it last.
	owner := map[string]string{}
	var order []string
	for i, u := range incs {
		if last[u.Incident.ID] != i {
			continue
		}
		inc := u.Incident
		_, err := st.ExecContext(ctx, str(inc.ID), u.Status, inc.Severity.String(), inc.Score,
			nullTime(inc.FirstSeen), nullTime(inc.LastSeen), nullTime(inc.Raised), nullStr(inc.Title), nullStr(inc.Tenant),
			listLiteral(inc.Signals), listLiteral(inc.Mailboxes), inc.AlertCount,
			inc.Impact.MessageCount, len(inc.Impact.Mailboxes), inc.Impact.Accesses, inc.Impact.EvidenceComplete)
		if err != nil {
			return fmt.Errorf("index: incident %s: %w", inc.ID, err)
		}
		ids := u.AlertIDs
		if ids == nil {
			ids = make([]string, len(inc.Alerts))
			for j := range inc.Alerts {
				ids[j] = inc.Alerts[j].ID()
			}
		}
		for _, id := range ids {
			if _, ok := owner[id]; !ok {
				order = append(order, id)
			}
			owner[id] = inc.ID
		}
	}
	if len(order) > 0 {
		rows := make([][]string, len(order))
		for i, id := range order {
			rows[i] = []string{id, str(owner[id])}
		}
		src, done, err := x.stageCSV("owners", rows, `{'id': 'VARCHAR', 'incident': 'VARCHAR'}`)
		if err != nil {
			return err
		}
		defer done()
		if _, err := tx.ExecContext(ctx, `UPDATE alerts SET incident = s.incident FROM `+src+` AS s WHERE alerts.id = s.id`); err != nil {
			return fmt.Errorf("index: incidents' alerts: %w", err)
		}
	}
	// An incident whose alerts all went to others merged into them.
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ? WHERE status NOT IN (?, ?) AND NOT EXISTS (SELECT 1 FROM alerts WHERE alerts.incident = incidents.id)`,
		StatusMerged, StatusMerged, StatusDissolved); err != nil {
		return fmt.Errorf("index: incidents: %w", err)
	}
	return nil
}

// putGrouping makes the incidents table follow a grouping: current is
// every incident detection holds now.
func (x *Index) putGrouping(ctx context.Context, tx *sql.Tx, current []*incident.Incident) error {
	byID := make(map[string]*incident.Incident, len(current))
	ids := make([]string, 0, len(current))
	for _, inc := range current {
		byID[inc.ID] = inc
		ids = append(ids, inc.ID)
	}
	named := listLiteral(ids)
	rows, err := tx.QueryContext(ctx, `SELECT id FROM incidents WHERE status IN (?, ?) AND list_contains(?::VARCHAR[], id) ORDER BY id`,
		StatusMerged, StatusDissolved, named)
	if err != nil {
		return fmt.Errorf("index: incidents back in the grouping: %w", err)
	}
	var back []IncidentUpdate
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("index: incidents back in the grouping: %w", err)
		}
		back = append(back, IncidentUpdate{Status: StatusReturned, Incident: byID[id]})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("index: incidents back in the grouping: %w", err)
	}
	if err := x.putIncidents(ctx, tx, back); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ? WHERE status NOT IN (?, ?) AND NOT list_contains(?::VARCHAR[], id)`,
		StatusDissolved, StatusMerged, StatusDissolved, named); err != nil {
		return fmt.Errorf("index: dissolved incidents: %w", err)
	}
	return nil
}

// listLiteral renders a string list as the engine's list literal text, cast
// by the statement: the driver binds no Go slices.
func listLiteral(vs []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range slices.Sorted(slices.Values(vs)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(str(v), "'", "''"))
		b.WriteByte('\'')
	}
	b.WriteByte(']')
	return b.String()
}

// linkAlerts sets (idx, sub) of the alerts not linked yet (of those named
// by ids, when not nil) to the first event of their source with their
// record id (one of the operation they name, if any), looking at events of
// journal entries from on. An alert whose record is not indexed is tried
// again by each update, against the events it adds only.
func linkAlerts(ctx context.Context, q execQuerier, from uint64, ids []string) error {
	// Most updates find no alert waiting: skip the join.
	var waiting bool
	if err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM alerts WHERE idx IS NULL AND record_id IS NOT NULL)`).Scan(&waiting); err != nil {
		return fmt.Errorf("index: link alerts to their events: %w", err)
	}
	if !waiting {
		return nil
	}
	_, err := q.ExecContext(ctx, `UPDATE alerts SET idx = m.idx, sub = m.sub FROM (
		SELECT a.id, arg_min(e.idx, [(e.op IS DISTINCT FROM a.op)::INTEGER, e.idx, e.sub]) AS idx,
			arg_min(e.sub, [(e.op IS DISTINCT FROM a.op)::INTEGER, e.idx, e.sub]) AS sub
		FROM alerts a JOIN events e ON e.record_id = a.record_id AND e.source = a.source
		WHERE a.idx IS NULL AND a.record_id IS NOT NULL AND e.idx >= CAST(? AS UBIGINT) AND (? OR list_contains(?::VARCHAR[], a.id))
		GROUP BY a.id) m
		WHERE alerts.id = m.id`, strconv.FormatUint(from, 10), ids == nil, listLiteral(ids))
	if err != nil {
		return fmt.Errorf("index: link alerts to their events: %w", err)
	}
	return nil
}

// execQuerier is a *sql.DB or a *sql.Tx.
type execQuerier interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// Detections counts the rows detection wrote.
type Detections struct {
	Alerts, Linked, Incidents uint64
}

// DetectionCounts reports the rows of alerts (and how many are linked to
// an event) and incidents.
func (x *Index) DetectionCounts(ctx context.Context) (Detections, error) {
	var d Detections
	err := x.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM alerts), (SELECT count(idx) FROM alerts), (SELECT count(*) FROM incidents)`).
		Scan(&d.Alerts, &d.Linked, &d.Incidents)
	if err != nil {
		return d, fmt.Errorf("index: count detections: %w", err)
	}
	return d, nil
}
