package config

import (
	"reflect"
	"slices"
	"strings"
	"sync"
)

// maxSuggestions is how many keys a suggestion may name; a misspelling
// close to more of them gets none, as it would not help.
const maxSuggestions = 3

// knownKeys lists every key of the configuration file as a path
// ("storage.queue.workers", "receivers[].slack_configs[].channel"), read
// from the yaml tags of Config's types.
var knownKeys = sync.OnceValue(func() []string {
	var keys []string
	keyPaths(reflect.TypeFor[Config](), "", map[reflect.Type]bool{}, &keys)
	return keys
})

// keyPaths appends the paths of t's keys under prefix to keys. A type met
// again below itself (a route's routes) is not walked twice.
func keyPaths(t reflect.Type, prefix string, seen map[reflect.Type]bool, keys *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case !f.IsExported() || name == "-":
		case strings.Contains(opts, "inline"):
			keyPaths(f.Type, prefix, seen, keys)
		case name != "":
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			*keys = append(*keys, path)
			keyPaths(f.Type, path, seen, keys)
		}
	}
}

// suggestKey returns the known keys under section (a top-level key, or ""
// for the whole file) whose last part is field or close to it, by path,
// for "did you mean": field is the decoder's unknown key, misspelt or in
// the wrong place (storage.workers for storage.queue.workers). Only the
// nearest ones are returned, and none when more than maxSuggestions are.
func suggestKey(section, field string) []string {
	limit := 1
	switch n := len(field); {
	case n > 10:
		limit = 3
	case n > 5:
		limit = 2
	}
	var best []string
	for _, k := range knownKeys() {
		if section != "" && k != section && !strings.HasPrefix(k, section+".") && !strings.HasPrefix(k, section+"[]") {
			continue
		}
		last := k[strings.LastIndexAny(k, ".")+1:]
		d := editDistance(field, last)
		if section == "" && strings.ContainsAny(k, ".[") {
			// At the top, a section's name is likelier than a key of a
			// section: routes is route before it is route.routes.
			d++
		}
		switch {
		case d > limit:
		case d < limit:
			limit, best = d, []string{k}
		default:
			best = append(best, k)
		}
	}
	if len(best) > maxSuggestions {
		return nil
	}
	slices.Sort(best)
	return best
}

// didYouMean is the hint for an unknown key with suggestions, or "".
func didYouMean(section, field string) string {
	keys := suggestKey(section, field)
	if len(keys) == 0 {
		return ""
	}
	return "did you mean " + strings.Join(keys, " or ")
}

// editDistance is the optimal string alignment distance of a and b: the
// insertions, deletions, substitutions and swaps of two neighbouring bytes
// that turn one into the other (keys are ASCII).
func editDistance(a, b string) int {
	// d[i][j] is the distance of a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
