package changelog

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"

	"drfs/journal"
)

// Workload: 1% of a 2 GiB image changed by 4 KiB writes at random aligned
// offsets (5,000 writes, about 20 MiB), the shape of a replication cycle of
// a busy VM.
const (
	benchImage  = 2 << 30
	benchWrites = 5000
	benchBlock  = 4096
)

var words = []string{"the", "guest", "kernel", "wrote", "block", "to", "disk", "and", "journal",
	"INFO", "2026-01-02", "systemd[1]:", "Started", "session", "of", "user", "root.", "\n", "database", "page"}

func fillData(kind string, b []byte, r *rand.Rand) {
	switch kind {
	case "random":
		for i := 0; i+8 <= len(b); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				b[i+j] = byte(v >> (8 * j))
			}
		}
	case "zero":
		clear(b)
	case "text":
		var buf bytes.Buffer
		for buf.Len() < len(b) {
			buf.WriteString(words[r.IntN(len(words))])
			buf.WriteByte(' ')
		}
		copy(b, buf.Bytes())
	}
}

func benchOps(kind string) []journal.Op {
	r := rand.New(rand.NewPCG(7, uint64(len(kind))))
	ops := make([]journal.Op, benchWrites)
	for i := range ops {
		data := make([]byte, benchBlock)
		fillData(kind, data, r)
		ops[i] = journal.OpWrite{Path: "vm1/disk.raw", Ino: 11,
			Off: int64(r.IntN(benchImage/benchBlock)) * benchBlock, Data: data}
	}
	return ops
}

// BenchmarkCoalesceEncode is a replication cycle's CPU cost: coalesce the
// journal records and encode the change log.
func BenchmarkCoalesceEncode(b *testing.B) {
	for _, kind := range []string{"random", "zero", "text"} {
		b.Run(kind, func(b *testing.B) {
			ops := benchOps(kind)
			h := testHeader()
			var st Stats
			b.SetBytes(benchWrites * benchBlock)
			for b.Loop() {
				var err error
				st, err = Encode(io.Discard, &Log{Header: h, Ops: Coalesce(ops)})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.RawBytes)/float64(st.EncodedBytes), "ratio")
			b.ReportMetric(float64(st.EncodedBytes)/(1<<20), "MiB-encoded")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, kind := range []string{"random", "zero", "text"} {
		b.Run(kind, func(b *testing.B) {
			data, _, err := Marshal(&Log{Header: testHeader(), Ops: Coalesce(benchOps(kind))})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchWrites * benchBlock)
			for b.Loop() {
				if _, err := Unmarshal(data, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeLevel compares the zstd levels considered for the body on
// the same records (the measurement behind encoderLevel).
func BenchmarkEncodeLevel(b *testing.B) {
	for _, kind := range []string{"random", "zero", "text"} {
		ops := Coalesce(benchOps(kind))
		var raw bytes.Buffer
		for _, op := range ops {
			p := journal.EncodeOp(op)
			raw.Write(record(op.Type(), p))
		}
		for _, lv := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
			b.Run(kind+"/"+lv.String(), func(b *testing.B) {
				enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lv), zstd.WithWindowSize(4<<20))
				if err != nil {
					b.Fatal(err)
				}
				var out bytes.Buffer
				b.SetBytes(int64(raw.Len()))
				for b.Loop() {
					out.Reset()
					enc.Reset(&out)
					enc.Write(raw.Bytes())
					enc.Close()
				}
				b.ReportMetric(float64(raw.Len())/float64(out.Len()), "ratio")
			})
		}
	}
}
