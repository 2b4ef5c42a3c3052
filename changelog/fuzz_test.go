package changelog

import (
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, returns a Log only without an
// error, and that whatever it accepts re-encodes to an equal Log.
func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	lim := Limits{MaxBodyBytes: 4 << 20, MaxOps: 1 << 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Unmarshal(data, lim)
		if err != nil {
			if l != nil {
				t.Fatalf("Log returned with error %v", err)
			}
			return
		}
		b, _, err := Marshal(l)
		if err != nil {
			t.Fatalf("re-encoding an accepted log: %v", err)
		}
		l2, err := Unmarshal(b, lim)
		if err != nil {
			t.Fatalf("decoding a re-encoded log: %v", err)
		}
		if !reflect.DeepEqual(l, l2) {
			t.Fatalf("re-encoded log differs:\n%s\n%s", dump(l), dump(l2))
		}
	})
}
