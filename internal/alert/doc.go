// Package alert owns the one shape every detector emits: an Alert (from a
// Sigma rule, a Sigma correlation, a behaviour or an IOC match), its Level
// and the Actors that identify who did what it describes. Detectors build
// Alerts; incident groups them; timeline and report render them as they
// are, converting nothing.
//
// It holds no detection logic and imports nothing of vigil's.
package alert
