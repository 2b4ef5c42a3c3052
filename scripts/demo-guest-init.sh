#!/bin/sh
# PID 1 of the demo's guest (a busybox initramfs built by scripts/demo.sh).
#
# The guest's disk (/dev/vda) is a log of numbered records, one per 512-byte
# sector: sector N holds "drfs-demo record N boot B site S". At boot the guest
# reads the log and checks it is a gapless run 1..M with nothing after it (what a
# crash-consistent copy of the disk must look like), then appends records
# M+1, M+2, ..., each written with O_DIRECT and flushed (fsync: a cache flush
# QEMU turns into fdatasync on the image) before it prints "synced N".
#
# Kernel command line: drfs.expect=E (fail the check unless M >= E),
# drfs.count=K (append K records then power off; 0 = until stopped),
# drfs.boot=B and drfs.site=S (written into each record).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.load); do insmod "/modules/$m"; done

expect=0 count=0 boot=0 site=?
for a in $(cat /proc/cmdline); do
	case $a in
	drfs.expect=*) expect=${a#*=} ;;
	drfs.count=*) count=${a#*=} ;;
	drfs.boot=*) boot=${a#*=} ;;
	drfs.site=*) site=${a#*=} ;;
	esac
done
say() { echo "guest: $*"; }
off() {
	sync
	poweroff -f
}

disk=/dev/vda
max=8000 # records; the log uses the disk's first 4 MiB
i=0
while [ ! -b $disk ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -b $disk ] || { say "CHECK FAILED: no disk"; off; }
say "boot $boot on site $site, up $(cut -d' ' -f1 /proc/uptime)s"

# NUL padding vanishes, every record is one line: line NR must be record NR.
res=$(dd if=$disk bs=512 skip=1 count=$max 2>/dev/null | tr -d '\000' | awk '
	$1 != "drfs-demo" || $2 != "record" || $3 + 0 != NR { print "bad " NR ": " substr($0, 1, 60); exit }
	END { print "ok " NR }')
case $res in
ok*) last=${res#ok } ;;
*)
	say "CHECK FAILED: the record log is not a gapless run ($res)"
	off
	;;
esac
if [ "$last" -lt "$expect" ]; then
	say "CHECK FAILED: records 1..$last on the disk, want at least 1..$expect"
	off
fi
if [ "$last" -eq 0 ]; then
	say "check ok: records 1..0: a new, empty disk"
else
	say "check ok: records 1..$last are all there, no gap, nothing after them (needed 1..$expect)"
fi

n=$last
while [ "$count" -eq 0 ] || [ $n -lt $((last + count)) ]; do
	[ $n -lt $max ] || break
	n=$((n + 1))
	printf 'drfs-demo record %d boot %s site %s\n' $n "$boot" "$site" |
		dd of=$disk bs=512 seek=$n conv=sync,notrunc,fsync oflag=direct 2>/dev/null || {
		say "write of record $n failed"
		off
	}
	echo "synced $n"
done
say "appended records $((last + 1))..$n; powering off"
off
