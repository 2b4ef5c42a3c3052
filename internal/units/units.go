// Package units formats and parses byte counts for people (powers of 1024).
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Bytes formats n as "512 B", "1.5 KiB", "20.0 MiB", ...
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ParseBytes parses a byte count with an optional K, M, G or T suffix ("" is 0).
func ParseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	}
	num := s
	if mult > 1 {
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if (err != nil && !errors.Is(err, strconv.ErrRange)) || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512M, 10G)", s)
	}
	// ParseInt saturates at MaxInt64 on ErrRange; the multiplication must not wrap either.
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large (at most 8388607T)", s)
	}
	return n * mult, nil
}

// Duration formats d as time.Duration does, without zero trailing units: 1h, 5m, 1h30m, 30s.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
