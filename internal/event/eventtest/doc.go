// Package eventtest gives tests one picture of an event: everything a
// consumer (rules, behaviours, impact, the index) can read of it, so two
// ways of decoding a record can be compared field by field.
package eventtest
