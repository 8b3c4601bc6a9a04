package journal

import "unsafe"

// hashBytes views hashes as their bytes, for one read or write call per
// run of hashes instead of one per hash.
func hashBytes(hs []Hash) []byte {
	if len(hs) == 0 {
		return nil
	}
	return unsafe.Slice(&hs[0][0], len(hs)*32)
}
