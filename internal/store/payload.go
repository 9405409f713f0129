package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
)

// Stored payloads are compressed with S2 (klauspost/compress/s2, its block
// format) behind a three-byte marker. Alertmanager's JSON compresses about
// 9× (the 10-alert test payload: 9,750 bytes to 1,112) in about 2 µs, and
// what SQLite writes per new notification fell from three overflow pages
// to a share of one leaf page: fewer WAL frames, fewer write syscalls, a
// smaller database. On PostgreSQL the compressed payload stays below the
// TOAST threshold, so the server no longer compresses it either.
//
// JSON never starts with a NUL byte, so a payload without the marker is
// one stored before compression, or one that did not get smaller, and is
// read as it is. (Bytes that do start with the marker are always stored
// compressed.)
var payloadMarker = []byte{0, 's', '2'}

// maxPayload bounds what a stored payload may decompress to, far above
// any webhook.max_body_size, so that a damaged row cannot make a reader
// allocate without bound.
const maxPayload = 1 << 30

// packScratch holds the buffers packPayload compresses into. S2 needs
// MaxEncodedLen of the input (more than the input itself) to write into,
// while what it writes is about a ninth of that: allocating the whole
// buffer per notification, zeroed, and holding it until the batch
// commits was a quarter of all the bytes the server allocated at
// saturation with new notifications. The result is copied out at its size
// instead.
var packScratch = sync.Pool{New: func() any { return new([]byte) }}

// maxScratch bounds the buffers packScratch keeps, so that one huge body
// does not stay in the pool.
const maxScratch = 256 << 10

// packPayload is what is stored for a payload.
func packPayload(raw []byte) []byte {
	if len(raw) == 0 {
		return raw
	}
	need := len(payloadMarker) + s2.MaxEncodedLen(len(raw))
	bp := packScratch.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxScratch {
			packScratch.Put(bp)
		}
	}()
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	dst := (*bp)[:need]
	copy(dst, payloadMarker)
	enc := s2.Encode(dst[len(payloadMarker):], raw)
	n := len(payloadMarker) + len(enc)
	// Bytes that begin like the marker are stored compressed even when that
	// is larger, or they would be read as compressed.
	if n >= len(raw) && !bytes.HasPrefix(raw, payloadMarker) {
		return raw
	}
	return bytes.Clone(dst[:n])
}

// errPayload says that a stored payload is marked compressed but cannot be
// decompressed.
var errPayload = errors.New("stored payload is damaged")

// unpackPayload returns the payload that was stored as b.
func unpackPayload(b []byte) ([]byte, error) {
	enc, ok := bytes.CutPrefix(b, payloadMarker)
	if !ok {
		return b, nil
	}
	n, err := s2.DecodedLen(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPayload, err)
	}
	if n > maxPayload {
		return nil, fmt.Errorf("%w: it claims %d bytes", errPayload, n)
	}
	raw, err := s2.Decode(make([]byte, n), enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPayload, err)
	}
	return raw, nil
}
