// Package config reads the configuration files of a drfs host: the daemon's
// (drfs daemon --config /etc/drfs/drfs.yaml), which mounts and replicates every volume of a
// primary host, and the replica side's (drfs serve --config /etc/drfs/serve.yaml).
//
// A file has the same structure as the flags of drfs mount and drfs serve: one volume entry
// holds what one drfs mount command line says, and FromMountFlags and FromServeFlags turn
// flags into the same types, checked by the same code.
//
// # Strictness
//
// A file is YAML (go.yaml.in/yaml/v3), one document, and is checked whole before anything
// is mounted. Every problem is reported, not only the first, as Errors, each naming the
// file, the line and the field:
//
//	drfs.yaml:13: volumes[0].jounral-max: unknown field (did you mean journal-max?)
//	drfs.yaml:16: volumes[0].rpo: "30 seconds": want a positive duration such as 30s, 5m or 1h30m
//	drfs.yaml:8: volumes[1].state: /var/lib/drfs/erp is also the state of volume "erp" (line 4): two volumes cannot share a state directory
//
// Refused: unknown fields, a field given twice, values of the wrong shape, sizes that
// internal/units.ParseBytes refuses (512K, 20M, 10G, 1T: powers of 1024), durations that
// time.ParseDuration refuses (30s, 5m, 1h30m; no "d"), relative paths, aliases (*name)
// and merge keys, a second document, a file larger than MaxFileSize. A null value
// ("journal-max:" with nothing after it) is the same as leaving the field out.
//
// Paths are checked against each other lexically (volume.Open checks the real directories
// again): no source, state or mountpoint may be, or be inside, another of the same volume
// (a state inside its source would journal its own journal) or of another volume (each
// volume is its own consistency group; a state directory belongs to one volume), and a
// file:// or export:// replica directory may not be inside any of them. Volume names
// (default: the source's base name) are unique and valid change-log volume ids; a volume's
// replica names a site of the file; site names are DNS labels, as in certificates.
//
// # The daemon's file
//
//	certs:      default certificate directory of this site (ca.pem, primary.pem, key.pem)
//	socket:     unix socket drfs status and drfs reload reach the daemon on
//	            (default /run/drfs/drfs.sock)
//	log:
//	  format:   text (default) or json, as --log-format
//	metrics:
//	  listen:   HOST:PORT of the Prometheus endpoint, as --metrics (default: none)
//	  pprof:    true also serves Go profiles on a non-loopback address, as --pprof
//	sites:      replica sites by name; the volumes that name a site share its link
//	  NAME:
//	    url:       https://HOST:PORT (drfs serve), file:///DIR, export:///DIR, or
//	               http://LOOPBACK:PORT with insecure (tests), as --replica
//	    bandwidth: link budget in bytes per second shared by the site's volumes (50M);
//	               left out, the link's throughput is measured. As --bwlimit, per link.
//	    certs:     certificate directory for this site (default: the top-level certs)
//	    insecure:  true allows the plaintext http:// URL (loopback only), as --insecure
//	volumes:    a list; each entry is one volume (one consistency group):
//	  - name:                as --volume (default: the name the state directory holds, or
//	                         the base name of source for a new volume)
//	    source:              as --source (required)
//	    state:               as --state (required)
//	    mountpoint:          as MOUNTPOINT (required)
//	    replica:             name of a site; left out, the volume is not replicated
//	    interval:            30s, 5m, ... or continuous, as --interval (default 30s)
//	    rpo:                 RPO target, at least 100ms, as --rpo (instead of interval)
//	    tier:                1 (most important) to 9 (default): when the link cannot carry
//	                         every volume, the higher tier keeps its target
//	    journal-max:         journal kept for an absent replica, as --journal-max
//	    checkpoint-interval: as --checkpoint-interval (default 30s)
//	    segment-size:        journal segment size, at least 1M, as --segment-size (default 64M)
//	    skip-unreplayable:   as --skip-unreplayable (default false)
//	    debug:               log every FUSE request, as --debug (default false)
//
// interval, rpo, tier and journal-max need a replica. A complete example
// (testdata/daemon/valid.yaml):
//
//	# /etc/drfs/drfs.yaml: every volume of this host, replicated to the site "dr".
//	certs: /etc/drfs/certs          # this site's certificates (drfs certs request ...)
//
//	log:
//	  format: json                  # text (default) or json
//
//	metrics:
//	  listen: 127.0.0.1:9750        # Prometheus metrics of every volume, labelled by volume
//	  pprof: false
//
//	sites:
//	  dr:                           # a replica site, named by its certificate (drfs://dr/replica)
//	    url: https://dr-site.example.com:9740
//	    bandwidth: 50M              # link budget, bytes/s; leave out to measure the link
//	  usb:
//	    url: export:///media/usb/drfs   # change logs as files for offline transport
//
//	volumes:
//	  - name: erp                   # default: the base name of source
//	    source: /srv/erp.real
//	    state: /var/lib/drfs/erp
//	    mountpoint: /srv/erp
//	    replica: dr
//	    rpo: 30s                    # ship early enough to stay under 30 s of lag
//	    tier: 1                     # 1 is the most important; default 9
//	    journal-max: 20G
//
//	  - name: build
//	    source: /srv/build.real
//	    state: /var/lib/drfs/build
//	    mountpoint: /srv/build
//	    replica: dr
//	    rpo: 1h
//	    tier: 3
//
//	  - name: archive
//	    source: /srv/archive.real
//	    state: /var/lib/drfs/archive
//	    mountpoint: /srv/archive
//	    replica: usb
//	    interval: 24h               # or continuous; default 30s
//	    checkpoint-interval: 1m
//	    segment-size: 128M
//
//	  - source: /srv/scratch.real   # not replicated: name "scratch.real"
//	    state: /var/lib/drfs/scratch
//	    mountpoint: /srv/scratch
//
// # The replica's file
//
//	dir:                 replica directory, as --dir (required)
//	listen:              HOST:PORT, as --listen (required)
//	certs:               certificate directory (ca.pem, replica.pem, key.pem), as --certs;
//	                     required unless insecure
//	insecure:            plaintext HTTP on a loopback address (tests only), as --insecure
//	max-concurrent-logs: as --max-concurrent-logs (default 4)
//	keep-points:         recovery points kept per volume, at least 1 (default 24)
//	keep-for:            also keep every point younger than this (default 0: none)
//	log, metrics:        as in the daemon's file
//	volumes:             a list of the volumes this site decides about:
//	  - name:        the volume (required)
//	    allow:       the site whose primary alone may use it, as --allow VOLUME=SITE;
//	                 left out, the first primary that uses it is bound to it
//	    keep-points: this volume's retention (default: the top-level keep-points)
//	    keep-for:    (default: the top-level keep-for)
//
// A volume not listed is served with the top-level retention. Example
// (testdata/serve/valid.yaml):
//
//	# /etc/drfs/serve.yaml on the replica site.
//	dir: /srv/drfs-replica          # volume V lives in DIR/V/data and DIR/V/state
//	listen: 0.0.0.0:9740
//	certs: /etc/drfs/certs
//	max-concurrent-logs: 4
//	keep-points: 48                 # default retention of every volume
//	keep-for: 24h
//
//	metrics:
//	  listen: 127.0.0.1:9751
//
//	volumes:
//	  - name: erp
//	    allow: hq                   # serve erp only to the primary of site hq
//	    keep-for: 168h              # a week of recovery points
//	  - name: build
//	    allow: hq
//	    keep-points: 12
//	    keep-for: 0s                # only the count protects
//
// # Reload
//
// Diff compares the running configuration with a new one, by volume name: volumes added,
// removed, changed (with the fields and the Scope of the change: schedule only, replica
// target, or the mount itself) and untouched, sites whose bandwidth changed, and
// process-wide settings. A file that does not parse changes nothing: the caller keeps the
// old configuration.
//
// DiffServe does the same for the replica's file (drfs serve reloads it on SIGHUP): by
// volume name, what is in force for each volume — its allow binding and its retention, its
// own or the top-level one — and, apart, the settings that take effect only when drfs serve
// restarts (dir, listen, certs, insecure, max-concurrent-logs, log, metrics);
// KeepRestartSettings gives the configuration a reload puts in force. A retention narrowed
// by a reload prunes nothing by itself: points are pruned as the next change log is applied.
package config
