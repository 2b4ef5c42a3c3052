package units

import (
	"math"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "", want: 0},
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "1K", want: 1 << 10},
		{in: "1k", want: 1 << 10},
		{in: "64M", want: 64 << 20},
		{in: "64m", want: 64 << 20},
		{in: "10G", want: 10 << 30},
		{in: "2T", want: 2 << 40},
		{in: "0T", want: 0},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "9007199254740991K", want: math.MaxInt64 - (1<<10 - 1)},
		{in: "8388607T", want: 8388607 << 40},

		// Too large for an int64: an error, never a wrapped or negative value.
		{in: "9223372036854775808", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
		{in: "9223372036854775807K", wantErr: true},
		{in: "9007199254740992K", wantErr: true}, // exactly 1<<63
		{in: "8796093022208M", wantErr: true},    // exactly 1<<63
		{in: "8589934592G", wantErr: true},       // exactly 1<<63
		{in: "8388608T", wantErr: true},          // exactly 1<<63
		{in: "16777216T", wantErr: true},         // 1<<64 wraps to 0

		// Negative.
		{in: "-1", wantErr: true},
		{in: "-1K", wantErr: true},
		{in: "-9223372036854775808", wantErr: true},

		// Not a size.
		{in: "K", wantErr: true},
		{in: "M", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "10X", wantErr: true},
		{in: "16E", wantErr: true},
		{in: "1P", wantErr: true},
		{in: "10KB", wantErr: true},
		{in: "10KiB", wantErr: true},
		{in: "10 M", wantErr: true},
		{in: " 10M", wantErr: true},
		{in: "10M ", wantErr: true},
		{in: "1.5G", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "1_000", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBytes(%q): %v", tt.in, err)
		} else if got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestBytes(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1<<20 - 1, "1024.0 KiB"},
		{1 << 20, "1.0 MiB"},
		{20 << 20, "20.0 MiB"},
		{10 << 30, "10.0 GiB"},
		{3 << 40, "3.0 TiB"},
		{5 << 50, "5.0 PiB"},
		{1 << 60, "1.0 EiB"},
		{math.MaxInt64, "8.0 EiB"},
	}
	for _, tt := range tests {
		if got := Bytes(tt.in); got != tt.want {
			t.Errorf("Bytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 5 * time.Minute: "5m", 90 * time.Minute: "1h30m", 30 * time.Second: "30s",
		time.Hour + time.Second: "1h0m1s", 1500 * time.Millisecond: "1.5s", 0: "0s",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}
