package incident_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/responder/responder/internal/incident"
)

// readPayload returns the 10-alert fixture that scripts/bench.sh posts.
func readPayload(b *testing.B) []byte {
	b.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "am_v4_firing_10.json"))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecodeMessage compares the webhook decoder (goccy/go-json plus
// validation) with encoding/json on the same payload, which is what the
// non-durable baseline of scripts/bench.sh does.
func BenchmarkDecodeMessage(b *testing.B) {
	body := readPayload(b)
	b.Run("DecodeMessage", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := incident.DecodeMessage(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeIdentity", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := incident.DecodeIdentity(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var m incident.Message
			if err := json.Unmarshal(body, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json+Validate", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var m incident.Message
			if err := json.Unmarshal(body, &m); err != nil {
				b.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StateHash", func(b *testing.B) {
		m, err := incident.DecodeMessage(body)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			_ = m.StateHash()
		}
	})
}
