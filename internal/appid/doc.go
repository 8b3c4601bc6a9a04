// Package appid names well-known application ids: the first-party
// Microsoft applications Microsoft lists in its public documentation
// (apps.csv, embedded in the binary, names its source). It only labels
// ids for people reading a report; no detection trusts an app because it
// is listed here, since a forged or stolen token carries a real
// first-party app id.
package appid
