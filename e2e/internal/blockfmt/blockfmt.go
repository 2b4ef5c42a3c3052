// Package blockfmt defines the self-describing 4 KiB blocks written by the
// crash writer and checked by the e2e crash tests.
package blockfmt

import (
	"encoding/binary"
	"hash/crc32"
)

const (
	Size  = 4096
	magic = "DRFSCRW1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fill writes block number, generation and a checksummed pseudo-random body into b.
func Fill(b []byte, block, gen uint64) {
	b = b[:Size]
	copy(b, magic)
	binary.LittleEndian.PutUint64(b[8:], block)
	binary.LittleEndian.PutUint64(b[16:], gen)
	x := block*0x9E3779B97F4A7C15 ^ gen*0xBF58476D1CE4E5B9 | 1
	for i := 24; i+8 <= Size-4; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	binary.LittleEndian.PutUint32(b[Size-4:], crc32.Checksum(b[:Size-4], castagnoli))
}

// Parse returns the block number and generation stored in b. zero is true
// when b is all zeroes (never written); ok is false for a torn or foreign block.
func Parse(b []byte) (block, gen uint64, zero, ok bool) {
	b = b[:Size]
	zero = true
	for _, c := range b {
		if c != 0 {
			zero = false
			break
		}
	}
	if zero {
		return 0, 0, true, true
	}
	if string(b[:8]) != magic {
		return 0, 0, false, false
	}
	if crc32.Checksum(b[:Size-4], castagnoli) != binary.LittleEndian.Uint32(b[Size-4:]) {
		return 0, 0, false, false
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), false, true
}
