package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// goldenDir holds JSON recorded from running replicas and primaries. The files are the
// compatibility contract of the protocol and of the replica's state.json: they are never
// regenerated from this code, only added to.
const goldenDir = "../testdata/wire"

// TestWire_GoldenRoundTrip decodes each recorded message into its type and encodes it again:
// the bytes must be identical, so a renamed, retyped or reordered field fails here.
func TestWire_GoldenRoundTrip(t *testing.T) {
	for _, c := range []struct {
		file   string
		v      any
		indent bool // state.json is written indented
	}{
		{"state.json", &State{}, true},
		{"state-replica.json", &State{}, true},
		{"state-full.json", &State{}, false},
		{"state-empty.json", &State{}, false},
		{"points.json", &[]Point{}, false},
		{"entry-full.json", &Entry{}, false},
		{"entry-missing.json", &Entry{}, false},
		{"entry-list.json", &[]Entry{}, false},
		{"promote-planned.json", &PromoteOptions{}, false},
		{"promote-abort.json", &PromoteOptions{}, false},
		{"promote-local.json", &PromoteOptions{}, false},
		{"promote-result.json", &PromoteResult{}, false},
		{"promote-aborted.json", &PromoteResult{}, false},
		{"error.json", &ErrorReply{}, false},
		{"resync-begin.json", &ResyncBegin{}, false},
		{"sync-complete.json", &SyncComplete{}, false},
		{"applied.json", &AppliedReply{}, false},
		{"clone.json", &CloneRequest{}, false},
	} {
		t.Run(c.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(goldenDir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(want))
			dec.DisallowUnknownFields()
			if err := dec.Decode(c.v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			var got []byte
			if c.indent {
				got, err = json.MarshalIndent(c.v, "", "  ")
			} else {
				got, err = json.Marshal(c.v)
				got = append(got, '\n')
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("re-encoded differently:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestWire_GoldenFullCoversEveryField: together, the recordings of a type set every field,
// so the round trip above checks each field's name (an unset omitempty field would pass unseen).
func TestWire_GoldenFullCoversEveryField(t *testing.T) {
	for _, c := range []struct {
		files []string
		v     func() any
	}{
		{[]string{"state-full.json"}, func() any { return &State{} }},
		{[]string{"entry-full.json"}, func() any { return &Entry{} }},
		{[]string{"promote-result.json", "promote-aborted.json"}, func() any { return &PromoteResult{} }},
		{[]string{"promote-planned.json", "promote-abort.json", "promote-local.json"}, func() any { return &PromoteOptions{} }},
		{[]string{"error.json"}, func() any { return &ErrorReply{} }},
		{[]string{"sync-complete.json"}, func() any { return &SyncComplete{} }},
		{[]string{"resync-begin.json"}, func() any { return &ResyncBegin{} }},
		{[]string{"clone.json"}, func() any { return &CloneRequest{} }},
	} {
		set := map[string]bool{}
		var typ reflect.Type
		for _, f := range c.files {
			b, err := os.ReadFile(filepath.Join(goldenDir, f))
			if err != nil {
				t.Fatal(err)
			}
			v := c.v()
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatal(err)
			}
			rv := reflect.ValueOf(v).Elem()
			typ = rv.Type()
			for i := range rv.NumField() {
				if !rv.Field(i).IsZero() {
					set[typ.Field(i).Name] = true
				}
			}
		}
		for i := range typ.NumField() {
			if !set[typ.Field(i).Name] {
				t.Errorf("%s: field %s is never set: the golden files do not cover it", typ.Name(), typ.Field(i).Name)
			}
		}
	}
}

// TestWire_Messages: the values the primary sends encode to the recorded bytes.
func TestWire_Messages(t *testing.T) {
	for _, c := range []struct {
		file string
		v    any
	}{
		{"resync-begin.json", ResyncBegin{VolumeID: "vol-1", Generation: 2}},
		{"sync-complete.json", SyncComplete{VolumeID: "vol-1", Generation: 2, Seq: 41, TolerantUntil: 44, Exact: true}},
		{"promote-planned.json", PromoteOptions{Planned: true, ExpectSeq: 41, Key: "fo-1"}},
		{"promote-abort.json", PromoteOptions{Planned: true, Key: "fo-1", Abort: true}},
		{"applied.json", AppliedReply{Applied: 41}},
		{"error.json", ErrorReply{Error: "replica: change log does not follow the applied seq", Code: CodeGap, Applied: 41}},
	} {
		want, err := os.ReadFile(filepath.Join(goldenDir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(c.v)
		if string(got)+"\n" != string(want) {
			t.Errorf("%s: %s, want %s", c.file, got, want)
		}
	}
}
