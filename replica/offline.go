package replica

import (
	"context"
	"fmt"
	"sort"

	"drfs/changelog"
)

// ApplyResult counts the change logs ApplyFiles went through.
type ApplyResult struct {
	Applied int // logs that moved a volume forward
	Skipped int // logs the volume had applied already (idempotent no-ops)
}

// ApplyFiles applies change-log files carried offline (written by a primary replicating to
// export:///DIR) to the volumes of replica directory dir, which no drfs serve may hold.
//
// The logs are ordered by their headers alone (by first seq), and each is decoded only when
// its turn comes, so memory holds one log at a time however many files there are. Each log
// goes to the volume whose ID it carries; a log of a volume dir does not hold stops the run, as
// does the first log a volume refuses (a gap, another generation, corruption). Logs applied
// before the error stay applied: running again with the same files skips them.
func ApplyFiles(ctx context.Context, dir string, files []string, opts Options) (ApplyResult, error) {
	var res ApplyResult
	type logFile struct {
		path string
		h    changelog.Header
	}
	var logs []logFile
	for _, f := range files {
		h, err := changelog.ReadFileHeader(f)
		if err != nil {
			return res, err
		}
		logs = append(logs, logFile{f, h})
	}
	sort.SliceStable(logs, func(i, j int) bool { return logs[i].h.FromSeq < logs[j].h.FromSeq })

	names, err := Volumes(dir)
	if err != nil {
		names = nil // no volume yet: every log is refused below with its ID
	}
	vols := map[string]*Volume{}
	defer func() {
		for _, v := range vols {
			v.Close()
		}
	}()
	byID := map[string]*Volume{}
	for _, name := range names {
		v, err := OpenVolume(dir, name, opts)
		if err != nil {
			return res, err
		}
		vols[name] = v
		byID[v.State().VolumeID] = v
	}
	for _, lf := range logs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h := lf.h
		v, ok := byID[h.VolumeID]
		if !ok {
			return res, fmt.Errorf("log %d-%d belongs to volume %s, which %s does not hold: seed it first", h.FromSeq, h.ToSeq, h.VolumeID, dir)
		}
		l, err := changelog.ReadFile(lf.path, changelog.Limits{})
		if err != nil {
			return res, err
		}
		before := v.State().Applied
		seq, err := v.Apply(l)
		if err != nil {
			return res, fmt.Errorf("log %d-%d: %w", h.FromSeq, h.ToSeq, err)
		}
		if seq == before {
			res.Skipped++
		} else {
			res.Applied++
		}
	}
	return res, nil
}
