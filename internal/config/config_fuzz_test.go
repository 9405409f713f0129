package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzLoad checks that Load never panics and that every accepted config
// survives a round trip through String: the printed text loads again and
// prints the same. Secrets print as <secret>, which is itself a valid inline
// secret, so the round trip covers them too; it compares the printed text,
// so it cannot tell a secret's value from <secret>, which String hides by
// design.
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "conf.*.yml"))
	require.NoError(f, err)
	files = append(files, filepath.Join("..", "..", "examples", "responder.yml"), "default.yml")
	for _, file := range files {
		text, err := os.ReadFile(file) //nolint:gosec // G304: the repository's own testdata and example config.
		require.NoError(f, err)
		f.Add(string(text))
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Load(text)
		if err != nil {
			require.Nil(t, c)
			return
		}
		printed := c.String()
		again, err := Load(printed)
		require.NoError(t, err, "String() of an accepted config must load:\n%s", printed)
		require.Equal(t, printed, again.String())
	})
}
