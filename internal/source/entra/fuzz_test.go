package entra

import (
	"testing"

	"github.com/valyala/fastjson"

	"github.com/vigil-audit/vigil/internal/event"
)

// FuzzDecode checks the decoder never panics on any JSON value.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p fastjson.Parser
		v, err := p.ParseBytes(data)
		if err != nil {
			return
		}
		b := event.NewBuilder()
		var e event.Event
		if k := Detect(v); k != None {
			_ = Decode(v, k, &e)
			Flatten(b, v, 0)
		}
		b.Finish(&e)
	})
}
