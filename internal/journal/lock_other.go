//go:build !unix

package journal

import (
	"fmt"
	"os"
)

func lockDir(dir string) (*os.File, error) {
	return nil, fmt.Errorf("journal: locking %s is not supported on this platform", dir)
}
