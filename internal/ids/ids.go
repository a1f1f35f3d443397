// Package ids makes time-ordered identifiers.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// crockford is the Crockford base32 alphabet, lowercased: ids sort by time
// and read well in URLs.
const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// Generator makes time-ordered ids (for POST, and for request ids): 48 bits of milliseconds since
// the Unix epoch then 80 random bits (the ULID layout), 26 characters.
// Within one millisecond the random part is incremented, so ids from one
// generator are strictly increasing.
type Generator struct {
	mu   sync.Mutex
	now  func() time.Time
	last uint64   // milliseconds of the previous id
	rnd  [10]byte // random part of the previous id
}

// New returns a Generator on the system clock.
func New() *Generator { return &Generator{now: time.Now} }

// Next returns a new id: 26 characters of Crockford base32, greater than
// every id this Generator returned before.
func (g *Generator) Next() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(g.now().UnixMilli())
	if ms <= g.last {
		ms = g.last
		for i := len(g.rnd) - 1; i >= 0; i-- { // increment, carrying
			g.rnd[i]++
			if g.rnd[i] != 0 {
				break
			}
		}
	} else {
		g.last = ms
		_, _ = rand.Read(g.rnd[:]) // crypto/rand.Read never fails
	}
	var raw [16]byte
	binary.BigEndian.PutUint16(raw[0:2], uint16(ms>>32)) // #nosec G115 -- the ULID keeps the low 48 bits of the time on purpose
	binary.BigEndian.PutUint32(raw[2:6], uint32(ms))     // #nosec G115 -- as above
	copy(raw[6:], g.rnd[:])
	// 128 bits as 26 base32 digits, most significant first (the first digit
	// carries only 3 bits).
	hi := binary.BigEndian.Uint64(raw[0:8])
	lo := binary.BigEndian.Uint64(raw[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
