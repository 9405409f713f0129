package sqlite_test

import (
	"testing"

	"github.com/responder/responder/internal/store"
	"github.com/responder/responder/internal/store/storetest"
)

func BenchmarkClaim(b *testing.B) {
	storetest.BenchmarkClaim(b, func(b *testing.B) *store.Store { return openDB(b).Store })
}
