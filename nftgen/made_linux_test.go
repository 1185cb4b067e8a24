//go:build linux

package nftgen

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestShapeEqualSeesEveryField changes each field of a shape in turn (and
// each field of a struct field, such as the rules): equal must tell every
// change apart, so a property added to shape cannot be left out of it.
func TestShapeEqualSeesEveryField(t *testing.T) {
	s := sportState()
	base := shapeOf(s)
	if !base.equal(shapeOf(s)) {
		t.Fatal("a shape is not equal to itself")
	}
	var walk func(name string, at func(mod *shape) reflect.Value, typ reflect.Type)
	walk = func(name string, at func(mod *shape) reflect.Value, typ reflect.Type) {
		if typ.Kind() == reflect.Struct {
			for i := range typ.NumField() {
				walk(name+"."+typ.Field(i).Name, func(mod *shape) reflect.Value { return field(at(mod), i) }, typ.Field(i).Type)
			}
			return
		}
		mod := shapeOf(s)
		f := at(&mod)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Slice:
			longer := reflect.MakeSlice(f.Type(), f.Len()+1, f.Len()+1)
			reflect.Copy(longer, f)
			f.Set(longer)
		default:
			t.Fatalf("shape%s is a %s: teach this test to change one", name, f.Kind())
		}
		if base.equal(mod) || mod.equal(base) {
			t.Errorf("equal does not see a change of shape%s", name)
		}
	}
	walk("", func(mod *shape) reflect.Value { return reflect.ValueOf(mod).Elem() }, reflect.TypeFor[shape]())
}

// field is v's i-th field, settable though unexported.
func field(v reflect.Value, i int) reflect.Value {
	f := v.Field(i)
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// TestLiveShapeNotWhole: a table that is missing, has rules of another
// version or no used set has no shape AddValid can add to.
func TestLiveShapeNotWhole(t *testing.T) {
	whole := Live{Exists: true, RulesCurrent: true, UsedExists: true}
	if _, ok := liveShape("seqknock", &whole); !ok {
		t.Fatal("a whole table has no shape")
	}
	for name, mut := range map[string]func(*Live){
		"no table":    func(l *Live) { l.Exists = false },
		"other rules": func(l *Live) { l.RulesCurrent = false },
		"no used set": func(l *Live) { l.UsedExists = false },
	} {
		l := whole
		mut(&l)
		if _, ok := liveShape("seqknock", &l); ok {
			t.Errorf("%s: liveShape says whole", name)
		}
	}
}
