// Package wire is the replication protocol between a primary (package shipper, on top of
// package volume) and a replica (package replica): the types both sides exchange, the codes and
// states they name, and the block hashing both compute. It imports neither side.
package wire
