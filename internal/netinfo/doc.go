// Package netinfo owns the IP → network table format: the networks.csv
// that `vigil simulate` writes and that `vigil hunt --networks` reads
// (CSV with the header prefix,asn,as_org,country,city,kind, or a JSON
// array of objects with those keys). It holds the row type, the table
// with its longest-prefix lookup, the loaders (CSV or JSON, sniffed;
// errors name the bad row by CSV line or array index and say why) and
// the CSV writer.
//
// There are two loaders because the table has two kinds of author. Load
// reads what users write: columns found by name, a plain address taken as
// a /32 or /128, host bits cleared, any kind word (tor, proxy). LoadStrict
// reads only the canonical form the simulator writes (fixed header,
// prefixes without host bits, ISO country codes, the four known kinds),
// so a generator bug cannot slip past its round-trip tests.
package netinfo
