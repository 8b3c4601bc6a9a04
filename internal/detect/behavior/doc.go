// Package behavior owns vigil's stateful detections: baselines kept per
// tenant, user, mailbox and app, learned from the events themselves, that
// catch forged-token mail access the way no single-record rule can (the
// D1–D11 catalogue of docs/detections.md): mail read with a token no
// sign-in issued (D1), a first-seen app reading mail (D2), read-volume
// anomalies and throttling (D3), access from networks with no sign-in or
// from hosting/VPN ranges (D4), script-style clients new to a mailbox
// (D7), sensitive searches followed by reads (D8), coverage gaps and
// disabled auditing (D9), and IOC retro-hunts (D11).
//
// The Engine is deterministic: the same events give the same alerts, in
// the same order, whether processed in one run or across a Save and Load.
// It works in event time (a watermark, the latest event time seen), never
// wall-clock time, so replaying old logs behaves like watching them live.
// It owns its settings file format (default.yaml) and its state format; it
// emits alert.Alert values and knows nothing of reports.
package behavior
