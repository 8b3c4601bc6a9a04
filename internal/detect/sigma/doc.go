// Package sigma compiles Sigma rules (SigmaHQ specification v2: detection
// rules, every value modifier of the modifiers appendix v2.1, and
// correlation rules) into matchers over event.Event, and runs them.
//
// Rules compile once: field names become interned event.Syms looked up
// through a per-source field mapping (see Route and FieldMappings), strings
// are lower-cased ahead of time, regular expressions and CIDR prefixes are
// parsed, and the condition becomes a tree over compiled selections.
// Matching an event does no YAML interpretation and, on the common path,
// no allocation. Rules are indexed per source by the exact value of a
// field every match requires (Operation, operationName, riskEventType,
// ...), so most rules are never evaluated for an event.
//
// A rule that uses anything this package does not implement exactly —
// an unknown modifier, an obsolete aggregation, a placeholder without
// values, a regular expression RE2 cannot run — is refused with the
// reason and never partly applied.
//
// Semantics worth knowing (docs/rules.md has the full list):
//   - Matching is case-insensitive unless |cased; |re is case-sensitive
//     unless |re|i.
//   - A field holding several values (an array, or a name found under
//     several mapped names) matches if any value matches.
//   - null matches an absent field or a JSON null; ” matches an empty
//     value.
//   - Keywords search the values of every flattened source field.
//   - A name with no value of its own matches against the values beneath
//     it (Graph's status object); a lazily flattened event is not
//     flattened to look when its decoder saw nothing beneath the name
//     (event.Event.NoneBelow).
//   - Correlation windows are kept per group in event time; events older
//     than a group's newest event minus the timespan are not counted
//     (Stats.Late). Conditions with an upper bound (lt, lte, eq) are
//     decided when their window closes: on a later event of the group, as
//     the input's event time moves past the window, or at Flush.
//
// Concurrency: see Ruleset. The package owns rule parsing, compilation
// and matching; it does not decode logs or format output.
package sigma
