// Package logging holds the helpers the packages share for structured logging with log/slog.
//
// Messages keep their prose; what varies goes into attributes with the same keys everywhere,
// so that one volume's or one record's story can be picked out of a daemon's log:
//
//	volume   volume name (set once, with Logger.With, by whatever owns the volume)
//	seq      one journal record
//	from, to the seqs a change log or a range of records covers
//	replica  the shipper's target
//	err      the error being reported
package logging

import "log/slog"

// OrDiscard returns l, or a logger that drops everything if l is nil.
func OrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Err is the attribute of an error.
func Err(err error) slog.Attr { return slog.Any("err", err) }
