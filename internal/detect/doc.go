// Package detect is the home of vigil's detection engines. It holds no
// code itself: sigma/ compiles Sigma rules (detection and correlation
// rules) into matchers over event.Event; behaviour detections with
// stateful baselines live beside it. Engines consume normalized events and
// emit detections; they never decode vendor formats, write the journal or
// format output.
package detect
