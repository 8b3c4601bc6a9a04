// Package timeline owns the detection timeline that `vigil hunt` prints:
// the ordering of alerts (internal/alert, the one shape every detector
// emits, rendered as it is) and their renderings as a table, CSV, JSON
// lines and a self-contained HTML page.
package timeline
