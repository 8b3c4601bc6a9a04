// Package report owns the files a hunt leaves behind for people and
// tools: detections.jsonl (every alert), incidents.json (incidents with
// their impact), impact.csv (one row per message read) and report.html, a
// self-contained page (no scripts, fonts or images fetched from anywhere)
// with the incidents, their timelines, a chart of reads over time and the
// impact tables.
//
// It renders what package incident computed; it detects nothing.
package report
