package shipper

import "time"

// appendClock remembers when the journal grew past each seq, so that the age of the oldest
// record the replica has not acknowledged is known to within one watch tick, however the
// records are cut into logs and however long a log waits for the link. Records carry no time
// of their own; the clock samples the journal's last seq instead.
type appendClock struct {
	// samples have increasing seqs; at is the latest time the journal was seen ending at seq,
	// so every record after seq was appended after at.
	samples []clockSample
}

type clockSample struct {
	seq uint64
	at  time.Time
}

// maxClockSamples bounds the samples kept while the replica is behind (a sample a tick
// while records arrive: 20 minutes at 50 a second). Past it every other sample is dropped,
// which can only make a lag look older, never younger.
const maxClockSamples = 1 << 16

// observe records that the journal ended at last at time now.
func (c *appendClock) observe(now time.Time, last uint64) {
	if n := len(c.samples); n > 0 && c.samples[n-1].seq >= last {
		c.samples[n-1].at = now
		return
	}
	c.samples = append(c.samples, clockSample{seq: last, at: now})
	if len(c.samples) > maxClockSamples {
		kept := c.samples[:0]
		for i, s := range c.samples {
			if i%2 == 0 || i == len(c.samples)-1 {
				kept = append(kept, s)
			}
		}
		c.samples = kept
	}
}

// since returns when the record after acked was appended, at the earliest: the time of the
// last sample that ended at or before acked (or of the first sample, for records older than
// every sample). The samples before that one are no longer needed and are dropped.
func (c *appendClock) since(acked uint64) time.Time {
	i := 0
	for i+1 < len(c.samples) && c.samples[i+1].seq <= acked {
		i++
	}
	c.samples = c.samples[i:]
	if len(c.samples) == 0 {
		return time.Time{}
	}
	return c.samples[0].at
}
