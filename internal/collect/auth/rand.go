package auth

import (
	"crypto/rand"
	"encoding/hex"
)

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}
