// Package timeline owns the detection timeline that `vigil hunt` prints:
// the Detection record every detector's hits are converted into, its
// ordering, and its renderings as a table, CSV, JSON lines and a
// self-contained HTML page.
package timeline
