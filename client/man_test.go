package client

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestManPageNamesEveryKey: seqknock(1)'s CONFIGURATION section names every
// key the client config accepts, in bold (.B or .BR).
func TestManPageNamesEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "man", "seqknock.1"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	start := strings.Index(page, "\n.SH CONFIGURATION\n")
	if start < 0 {
		t.Fatal("seqknock.1: no CONFIGURATION section")
	}
	section := page[start+1:]
	if end := strings.Index(section[1:], "\n.SH "); end >= 0 {
		section = section[:end+1]
	}
	var keys []string
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				walk(f.Type.Elem())
				continue
			}
			if key != "" {
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeOf(rawClientConfig{}))
	if len(keys) < 10 {
		t.Fatalf("found only %d keys in rawClientConfig: %v", len(keys), keys)
	}
	for _, key := range keys {
		bold := regexp.MustCompile(`(?m)^\.BR? (.* )?` + regexp.QuoteMeta(strings.ReplaceAll(key, "-", `\-`)) + `( |$)`)
		if !bold.MatchString(section) {
			t.Errorf("seqknock.1, CONFIGURATION: key %s is not named in bold", key)
		}
	}
}
