// Package incident owns what detections become once they leave a rule or
// behaviour: the Alert every detector (Sigma rules and the stateful
// behaviours alike) is converted into, the grouping of alerts that share an
// actor or a mailbox into incidents, and the impact of each incident: every
// mailbox, folder and message its actor read, with a statement of whether
// the audit evidence for that is complete.
//
// It decodes no log format and runs no detection; it reads only normalized
// events (for impact) and alerts.
package incident
