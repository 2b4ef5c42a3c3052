package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"drfs/changelog"
	"drfs/journal"
)

var regexpTLS = regexp.MustCompile(`(?i)tls|x509|certificate|handshake`)

// randBytes returns n pseudo-random (incompressible) bytes.
func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	r.Read(b)
	return b
}

func mustWriteFile(t testing.TB, p string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		t.Fatal(err)
	}
}

// prepareTree fills a primary source directory before the first mount.
func prepareTree(t testing.TB, src string) {
	t.Helper()
	mustWriteFile(t, filepath.Join(src, "vmconf/vm1.xml"), []byte("<domain><name>vm1</name></domain>\n"), 0o644)
	mustWriteFile(t, filepath.Join(src, "vmconf/secret.key"), randBytes(1, 3000), 0o600)
	mustWriteFile(t, filepath.Join(src, "bin/start.sh"), []byte("#!/bin/sh\necho start\n"), 0o755)
	mustWriteFile(t, filepath.Join(src, "dirA/sub/one.txt"), bytes.Repeat([]byte("one\n"), 5000), 0o644)
	mustWriteFile(t, filepath.Join(src, "dirA/two.bin"), randBytes(2, 1<<20+17), 0o644)
	mustWriteFile(t, filepath.Join(src, "file1"), randBytes(3, 300000), 0o644)
	// A sparse 64 MiB file with three small data islands.
	sp := filepath.Join(src, "images/sparse.raw")
	mustWriteFile(t, sp, nil, 0o644)
	f, err := os.OpenFile(sp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for i, off := range []int64{0, 10 << 20, 63 << 20} {
		if _, err := f.WriteAt(randBytes(uint64(10+i), 64<<10), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := os.Symlink("vmconf/vm1.xml", filepath.Join(src, "link-to-conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")); err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, filepath.Join(src, "hard1"), randBytes(4, 70000), 0o644)
	if err := os.Link(filepath.Join(src, "hard1"), filepath.Join(src, "dirA/hard2")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(src, "file1"), "user.x", []byte("pre-existing xattr"), 0); err != nil {
		t.Fatalf("setxattr user.x on the source (file system without user xattrs?): %v", err)
	}
}

// TestReplication_TreeEqual replicates a pre-existing tree and a mix of real
// client workloads over an insecure loopback replica in continuous mode and
// checks that the replica tree equals the primary's source tree.
func TestReplication_TreeEqual(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-io", "fio", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "cp", "truncate")
	r := startReplica(t, "", "")
	m := testMountWith(t, MountOptions{
		Args:    r.MountArgs("--interval", "continuous"),
		Prepare: func(src string) { prepareTree(t, src) },
	})
	mnt := m.Mnt

	// qcow2 with qemu-img / qemu-io.
	img := filepath.Join(mnt, "images/vm.qcow2")
	mustRun(t, time.Minute, "qemu-img", "create", "-q", "-f", "qcow2", img, "256M")
	qemuIO(t, img, "none", "write -P 0x5a 0 4M", "write -P 0xa5 100M 2M", "aio_flush")
	qemuIO(t, img, "writeback", "write -P 0x44 64M 3M", "write -z 65M 512k", "flush")
	qemuIO(t, img, "none", "aio_write -P 0x11 200M 1M", "aio_write -P 0x22 255M 1M", "aio_flush")
	qemuImgCheck(t, img)

	// fio with crc32c verification.
	fioArgsFor := func(file string, extra ...string) []string {
		return append([]string{"--name=drfs-repl", "--filename=" + file, "--rw=randwrite", "--bs=4k", "--size=32M",
			"--ioengine=libaio", "--iodepth=8", "--direct=1", "--verify=crc32c", "--verify_fatal=1",
			"--verify_state_save=0", "--randrepeat=1", "--randseed=777", "--output-format=normal"}, extra...)
	}
	runFio(t, fioArgsFor(filepath.Join(mnt, "fio.dat")))

	// ext4 on a loop device inside the mount.
	ext4Img := filepath.Join(mnt, "images/ext4.img")
	mustRun(t, time.Minute, "truncate", "-s", "64M", ext4Img)
	dev := strings.TrimSpace(mustRun(t, time.Minute, "losetup", "-f", "--show", "--direct-io=on", ext4Img))
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("losetup printed %q", dev)
	}
	detached := false
	detach := func() {
		if !detached {
			detached = true
			run(t, time.Minute, "losetup", "-d", dev)
			waitLoopGone(t, dev)
		}
	}
	fsMnt := filepath.Join(scratchDir(t, "drfs-e2e-ext4-"), "m")
	if err := os.Mkdir(fsMnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fsMounted := false
	t.Cleanup(func() {
		if fsMounted {
			if _, err := run(t, time.Minute, "umount", fsMnt); err != nil {
				forceUnmount(fsMnt)
			}
		}
		detach()
	})
	mustRun(t, 2*time.Minute, "mkfs.ext4", "-q", "-F", dev)
	mustRun(t, time.Minute, "mount", "-t", "ext4", dev, fsMnt)
	fsMounted = true
	goroot := goRoot(t)
	if out, err := run(t, time.Minute, "go", "env", "GOROOT"); err == nil && strings.TrimSpace(out) != "" {
		goroot = strings.TrimSpace(out)
	}
	for _, d := range []string{"fmt", "bufio", "strings"} {
		mustRun(t, 2*time.Minute, "cp", "-a", filepath.Join(goroot, "src", d), filepath.Join(fsMnt, d))
	}
	mustRun(t, 2*time.Minute, "umount", fsMnt)
	fsMounted = false
	detach()

	// Renames: a file and a directory with contents.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Rename(filepath.Join(mnt, "file1"), filepath.Join(mnt, "vmconf/file1.renamed")))
	must(os.Rename(filepath.Join(mnt, "dirA"), filepath.Join(mnt, "dirB")))

	// Unlink of an open file that is written after the unlink.
	of, err := os.Create(filepath.Join(mnt, "open-unlinked"))
	must(err)
	_, err = of.Write(randBytes(20, 1<<20))
	must(err)
	must(os.Remove(filepath.Join(mnt, "open-unlinked")))
	_, err = of.WriteAt(randBytes(21, 1<<20), 2<<20)
	must(err)
	must(of.Sync())
	must(of.Close())

	// Truncate: shrink and grow.
	tr := filepath.Join(mnt, "trunc.dat")
	must(os.WriteFile(tr, randBytes(22, 4<<20), 0o644))
	must(os.Truncate(tr, 1<<20+123))
	must(os.Truncate(tr, 8<<20))

	// fallocate: punch a hole and zero a range.
	holes := filepath.Join(mnt, "holes.dat")
	must(os.WriteFile(holes, randBytes(23, 8<<20), 0o644))
	hf, err := os.OpenFile(holes, os.O_RDWR, 0)
	must(err)
	if err := unix.Fallocate(int(hf.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1<<20, 1<<20); err != nil {
		t.Errorf("fallocate PUNCH_HOLE on the mount: %v", err)
	}
	if err := unix.Fallocate(int(hf.Fd()), unix.FALLOC_FL_ZERO_RANGE, 4<<20, 300<<10); err != nil {
		t.Errorf("fallocate ZERO_RANGE on the mount: %v", err)
	}
	// Extend with fallocate too.
	if err := unix.Fallocate(int(hf.Fd()), 0, 8<<20, 1<<20); err != nil {
		t.Errorf("fallocate (extend) on the mount: %v", err)
	}
	must(hf.Close())

	// copy_file_range (no xfs_io here: Go's unix.CopyFileRange).
	cin, err := os.Open(holes)
	must(err)
	cout, err := os.Create(filepath.Join(mnt, "cfr.dat"))
	must(err)
	inOff, outOff := int64(512<<10), int64(4096)
	for left := 6 << 20; left > 0; {
		n, err := unix.CopyFileRange(int(cin.Fd()), &inOff, int(cout.Fd()), &outOff, left, 0)
		if err != nil {
			t.Fatalf("copy_file_range on the mount: %v", err)
		}
		if n == 0 {
			t.Fatalf("copy_file_range returned 0 with %d bytes left", left)
		}
		left -= n
	}
	cin.Close()
	must(cout.Close())

	// Metadata through the mount: chmod, a new hard link, an xattr.
	must(os.Chmod(filepath.Join(mnt, "vmconf/vm1.xml"), 0o640))
	must(os.Link(filepath.Join(mnt, "trunc.dat"), filepath.Join(mnt, "vmconf/trunc.hard")))
	if err := unix.Setxattr(filepath.Join(mnt, "holes.dat"), "user.y", []byte("set through the mount"), 0); err != nil {
		t.Errorf("setxattr through the mount: %v", err)
	}

	acked := m.Sync(2 * time.Minute)
	st := m.Status()
	t.Logf("primary status: %s", st.raw)
	if st.AckedSeq != acked {
		t.Errorf("status acked_seq %d, drfs sync said %d", st.AckedSeq, acked)
	}
	if st.ReplicationState != "replicating" {
		t.Errorf("replication_state %q after sync, want replicating", st.ReplicationState)
	}

	data := r.DataDir(m.Volume)
	requireTreesEqual(t, m.Src, data)
	mustRun(t, 3*time.Minute, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2",
		filepath.Join(m.Src, "images/vm.qcow2"), filepath.Join(data, "images/vm.qcow2"))
	qemuImgCheck(t, filepath.Join(data, "images/vm.qcow2"))
	out := runFio(t, fioArgsFor(filepath.Join(data, "fio.dat"), "--verify_only"))
	if !strings.Contains(out, "READ:") {
		t.Errorf("fio --verify_only on the replica read nothing:\n%s", out)
	}
	mustRun(t, 2*time.Minute, "e2fsck", "-fn", filepath.Join(data, "images/ext4.img"))

	rs, ok := replicaStatus(t, r.Dir, m.Volume)
	if !ok {
		t.Fatalf("drfs status --dir %s does not list volume %s", r.Dir, m.Volume)
	}
	t.Logf("replica status: %+v", rs)
	if !rs.Consistent {
		t.Errorf("replica says consistent=false after a completed sync")
	}
	if rs.AppliedSeq != acked {
		t.Errorf("replica applied_seq %d, primary acked_seq %d", rs.AppliedSeq, acked)
	}
	checkPoints(t, replicaPoints(t, r.Dir, m.Volume), rs.AppliedSeq)
}

// TestReplication_HTTPSAndWrongCert replicates over mutual TLS, and checks
// that a primary with certificates of another CA cannot replicate, and that
// plaintext is refused where it must be.
func TestReplication_HTTPSAndWrongCert(t *testing.T) {
	requireTools(t)
	requireBuilt(t, drfsBin, "drfs (cmd/drfs)")
	cd := scratchDir(t, "drfs-e2e-certs-")
	certs, wrong := filepath.Join(cd, "good"), filepath.Join(cd, "wrong")
	mustRun(t, time.Minute, drfsBin, "certs", "--out", certs)
	mustRun(t, time.Minute, drfsBin, "certs", "--out", wrong)
	for _, f := range []string{"ca.pem", "ca-key.pem", "key.pem", "primary.pem", "replica.pem"} {
		if _, err := os.Stat(filepath.Join(certs, f)); err != nil {
			t.Fatalf("drfs certs did not write %s: %v", f, err)
		}
	}
	r := startReplica(t, "", certs)

	good := testMountWith(t, MountOptions{Volume: "tlsgood", Args: r.MountArgs("--interval", "continuous")})
	payload := randBytes(30, 3<<20+5)
	mustWriteFile(t, filepath.Join(good.Mnt, "disk.raw"), payload, 0o644)
	good.Sync(time.Minute)
	requireTreesEqual(t, good.Src, r.DataDir("tlsgood"))

	bad := testMountWith(t, MountOptions{Volume: "tlsbad",
		Args: []string{"--replica", r.URL(), "--certs", wrong, "--interval", "continuous"}})
	mustWriteFile(t, filepath.Join(bad.Mnt, "secret.raw"), randBytes(31, 1<<20), 0o644)
	out, err := drfsCmd(t, 30*time.Second, "sync", "--state", bad.State, "--timeout", "5s")
	if err == nil {
		t.Errorf("drfs sync with certificates of another CA succeeded:\n%s", out)
	}
	st := bad.Status()
	t.Logf("status with the wrong certificates: %s", st.raw)
	if !regexpTLS.MatchString(st.LastError) {
		t.Errorf("status last_error %q does not name a TLS/certificate problem", st.LastError)
	}
	if st.AckedSeq != 0 {
		t.Errorf("acked_seq %d with the wrong certificates, want 0", st.AckedSeq)
	}
	ents, _ := os.ReadDir(r.DataDir("tlsbad"))
	if len(ents) > 0 {
		t.Errorf("replica holds data for a primary with the wrong certificates: %v", ents)
	}
	if !strings.Contains(r.Log(), "tls") && !strings.Contains(strings.ToLower(r.Log()), "certificate") {
		t.Logf("note: drfs serve logged nothing about the refused handshake:\n%s", r.Log())
	}

	// Plaintext refusals.
	out, err = drfsCmd(t, 20*time.Second, "serve", "--insecure", "--listen", "0.0.0.0:0", "--dir", filepath.Join(cd, "nope"))
	if err == nil || !strings.Contains(out, "loopback") {
		t.Errorf("drfs serve --insecure --listen 0.0.0.0:0: err=%v, want a refusal naming loopback:\n%s", err, out)
	}
	d := scratchDir(t, "drfs-e2e-plain-")
	for _, p := range []string{"src", "state", "mnt"} {
		os.Mkdir(filepath.Join(d, p), 0o755)
	}
	pm := filepath.Join(d, "mnt")
	t.Cleanup(func() { forceUnmount(pm) })
	out, err = drfsCmd(t, 30*time.Second, "mount", "--source", filepath.Join(d, "src"), "--state", filepath.Join(d, "state"),
		"--replica", "http://"+r.Addr, pm)
	if err == nil || !strings.Contains(out, "insecure") {
		t.Errorf("drfs mount --replica http://... without --insecure: err=%v, want a refusal naming --insecure:\n%s", err, out)
	}
	if isMounted(pm) {
		t.Errorf("refused drfs mount left %s mounted", pm)
	}
}

// craftLog builds a change log by hand (valid framing, CRCs and zstd frame)
// from ops that the encoder would refuse.
func craftLog(t testing.TB, h changelog.Header, ops []journal.Op) []byte {
	t.Helper()
	var raw []byte
	for _, op := range ops {
		p := journal.EncodeOp(op)
		raw = append(raw, byte(op.Type()))
		raw = binary.AppendUvarint(raw, uint64(len(p)))
		raw = append(raw, p...)
	}
	var body bytes.Buffer
	zw, err := zstd.NewWriter(&body, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	zw.ResetContentSize(&body, int64(len(raw)))
	zw.Write(raw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	cast := crc32.MakeTable(crc32.Castagnoli)
	b := []byte("DRFSCLG1")
	b = binary.LittleEndian.AppendUint16(b, changelog.Version)
	b = append(b, byte(h.Kind), 0, byte(len(h.VolumeID)))
	b = append(b, h.VolumeID...)
	for _, v := range []uint64{h.Generation, h.FromSeq, h.ToSeq, uint64(h.Created.UnixNano()), uint64(len(ops)), uint64(len(raw)), uint64(body.Len())} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, cast))
	b = append(b, body.Bytes()...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, cast))
	return append(b, "DRFSEND1"...)
}

// replicaState reads DIR/V/state/state.json.
type replicaStateJSON struct {
	VolumeID   string `json:"volume_id"`
	Generation uint64 `json:"generation"`
	Applied    uint64 `json:"applied_seq"`
	Consistent bool   `json:"consistent"`
	Applying   *struct {
		From, To uint64
	} `json:"applying"`
	Points []struct {
		From   uint64 `json:"from_seq"`
		To     uint64 `json:"to_seq"`
		Resync bool   `json:"resync"`
	} `json:"points"`
	LastError string `json:"last_error"`
}

func readReplicaState(t testing.TB, dir, v string) replicaStateJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, v, "state", "state.json"))
	if err != nil {
		t.Fatalf("replica state: %v", err)
	}
	var st replicaStateJSON
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("replica state.json: %v\n%s", err, b)
	}
	return st
}

// checkPointChain requires the kept recovery points of a replica to be
// contiguous log ranges ending at the applied seq (a resync log covers no seq
// unless the resync completed at a later one: from may be to+1).
func checkPointChain(t testing.TB, st replicaStateJSON) {
	t.Helper()
	for i, p := range st.Points {
		if p.From > p.To && !(p.Resync && p.From == p.To+1) {
			t.Errorf("recovery point %d: from %d > to %d", i, p.From, p.To)
		}
		if i > 0 && p.From != st.Points[i-1].To+1 {
			t.Errorf("recovery points not contiguous: [%d,%d] follows [%d,%d]", p.From, p.To, st.Points[i-1].From, st.Points[i-1].To)
		}
	}
	if n := len(st.Points); n > 0 && st.Points[n-1].To != st.Applied {
		t.Errorf("last recovery point ends at %d, applied_seq is %d", st.Points[n-1].To, st.Applied)
	}
}

func sha(p string) [32]byte {
	b, _ := os.ReadFile(p)
	return sha256.Sum256(b)
}

// TestReplication_CraftedLogRefused PUTs hand-made change logs that try to
// escape the replica tree and checks that they are refused, change nothing
// and leave the replica working.
func TestReplication_CraftedLogRefused(t *testing.T) {
	requireTools(t)
	r := startReplica(t, "", "")
	outside := scratchDir(t, "drfs-e2e-outside-")
	m := testMountWith(t, MountOptions{Volume: "crafted", Args: r.MountArgs("--interval", "continuous")})
	mustWriteFile(t, filepath.Join(m.Mnt, "disk.raw"), randBytes(40, 1<<20), 0o644)
	// A symlink inside the volume that points outside it; legitimately replicated.
	if err := os.Symlink(outside, filepath.Join(m.Mnt, "evil")); err != nil {
		t.Fatal(err)
	}
	acked := m.Sync(time.Minute)
	data := r.DataDir("crafted")
	if tgt, err := os.Readlink(filepath.Join(data, "evil")); err != nil || tgt != outside {
		t.Fatalf("replica evil symlink: %q, %v; want -> %s", tgt, err, outside)
	}
	before := readReplicaState(t, r.Dir, "crafted")
	if before.Applied != acked {
		t.Fatalf("replica applied %d, primary acked %d", before.Applied, acked)
	}
	passwd := sha("/etc/passwd")
	h := changelog.Header{Kind: changelog.KindJournal, VolumeID: before.VolumeID, Generation: before.Generation,
		FromSeq: before.Applied + 1, ToSeq: before.Applied + 3, Created: time.Now()}
	evil := []byte("drfs-e2e crafted log was applied\n")
	cases := []struct {
		name string
		ops  []journal.Op
	}{
		{"dotdot", []journal.Op{
			journal.OpCreate{Path: "../escape", Mode: 0o644, Ino: 900},
			journal.OpWrite{Path: "../escape", Ino: 900, Data: evil},
			journal.OpCreate{Path: "../../" + filepath.Base(outside) + "/dotdot", Mode: 0o644, Ino: 901},
		}},
		{"absolute", []journal.Op{
			journal.OpSetxattr{Path: "/etc/passwd", Name: "user.drfs_e2e", Value: evil, Ino: 902},
			journal.OpCreate{Path: filepath.Join(outside, "abs"), Mode: 0o644, Ino: 903},
			journal.OpWrite{Path: filepath.Join(outside, "abs"), Ino: 903, Data: evil},
		}},
		{"through-symlink", []journal.Op{
			journal.OpCreate{Path: "evil/x", Mode: 0o644, Ino: 904},
			journal.OpWrite{Path: "evil/x", Ino: 904, Data: evil},
			journal.OpMkdir{Path: "evil/d", Mode: 0o755, Ino: 905},
		}},
		{"symlink-then-write", []journal.Op{ // a symlink created by the log itself
			journal.OpSymlink{Path: "evil2", Target: outside, Ino: 906},
			journal.OpCreate{Path: "evil2/y", Mode: 0o644, Ino: 907},
			journal.OpWrite{Path: "evil2/y", Ino: 907, Data: evil},
		}},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tc := range cases {
		body := craftLog(t, h, tc.ops)
		req, _ := http.NewRequest(http.MethodPut, "http://"+r.Addr+"/v1/volumes/crafted/log", bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: PUT: %v", tc.name, err)
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s: HTTP %d %s", tc.name, resp.StatusCode, strings.TrimSpace(string(rb)))
		if resp.StatusCode < 400 {
			t.Errorf("%s: crafted log accepted (HTTP %d): %s", tc.name, resp.StatusCode, rb)
		}
		after := readReplicaState(t, r.Dir, "crafted")
		if after.Applied != before.Applied || after.Applying != nil {
			t.Errorf("%s: replica applied_seq %d (applying %+v) after a refused log, want %d", tc.name, after.Applied, after.Applying, before.Applied)
		}
	}
	// Nothing outside the replica tree was touched.
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("crafted logs wrote outside the replica: %s holds %v", outside, names)
	}
	for _, p := range []string{filepath.Join(r.Dir, "crafted", "escape"), filepath.Join(r.Dir, "escape"), filepath.Join(filepath.Dir(data), "escape")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("crafted log created %s", p)
		}
	}
	if sha("/etc/passwd") != passwd {
		t.Errorf("/etc/passwd changed")
	}
	if n, _ := unix.Getxattr("/etc/passwd", "user.drfs_e2e", make([]byte, 256)); n > 0 {
		t.Errorf("crafted log set an xattr on /etc/passwd")
		unix.Removexattr("/etc/passwd", "user.drfs_e2e")
	}
	for _, p := range []string{"evil2", "x", "d"} {
		if _, err := os.Lstat(filepath.Join(data, p)); err == nil {
			t.Errorf("refused log left %s in the replica tree", p)
		}
	}
	ms := scrapeMetrics(t, r.Metrics)
	t.Logf("replica metrics: applied=%v rejected=%v", ms["drfs_replica_logs_applied_total"], ms["drfs_replica_logs_rejected_total"])
	requireMetric(t, ms, "drfs_replica_logs_rejected_total")

	// The replica keeps working for the real primary.
	mustWriteFile(t, filepath.Join(m.Mnt, "after.raw"), randBytes(41, 2<<20), 0o644)
	f, err := os.OpenFile(filepath.Join(m.Mnt, "disk.raw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(randBytes(42, 8192), 4096)
	f.Close()
	acked2 := m.Sync(time.Minute)
	if acked2 <= acked {
		t.Errorf("acked seq did not advance after the refused logs: %d -> %d", acked, acked2)
	}
	requireTreesEqual(t, m.Src, data)
	final := readReplicaState(t, r.Dir, "crafted")
	if final.Applied != acked2 || !final.Consistent {
		t.Errorf("replica after the real primary resumed: applied %d consistent %v, want %d true", final.Applied, final.Consistent, acked2)
	}
	checkPointChain(t, final)
}
