//go:build !unix

package detect

import "errors"

func mapArena(int) ([]byte, error) { return nil, errors.New("no mmap here") }

func unmapArena([]byte) {}
