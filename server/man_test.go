package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestManPageNamesEveryKey: seqknockd.toml(5) describes every key the
// config accepts, each as a tagged paragraph that starts with the key in
// bold.
func TestManPageNamesEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "man", "seqknockd.toml.5"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, typ := range []reflect.Type{reflect.TypeOf(rawConfig{}), reflect.TypeOf(rawService{}), reflect.TypeOf(rawUser{})} {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if key == "" {
				continue
			}
			// A slice of structs with TOML keys is an array of tables; a
			// value type decoding itself (key_files entries) is a key.
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct &&
				f.Type.Elem().NumField() > 0 && f.Type.Elem().Field(0).Tag.Get("toml") != "" {
				if !strings.Contains(page, `.SS "[[`+key+`]]"`) {
					t.Errorf("seqknockd.toml.5: no section [[%s]]", key)
				}
				continue
			}
			esc := strings.ReplaceAll(key, "-", `\-`)
			if !strings.Contains(page, "\n.BR "+esc+" ") && !strings.Contains(page, "\n.B "+esc+"\n") {
				t.Errorf("seqknockd.toml.5: key %s (%s.%s) is not described", key, typ.Name(), f.Name)
			}
		}
	}
}
