package volume

import (
	"os"
	"syscall"
)

// blocksOf is the number of 512-byte blocks a file occupies on the host.
func blocksOf(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks
	}
	return (st.Size() + 511) / 512
}
