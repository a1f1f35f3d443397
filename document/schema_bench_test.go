package document

import (
	"context"
	"testing"

	"github.com/patchd/patchd/internal/benchdoc"
)

// BenchmarkSchemaValidate is the validation alone of a 1 KB order form
// against a realistic schema (the one of handlers' BenchmarkTargetSchema).
func BenchmarkSchemaValidate(b *testing.B) {
	c, err := compileSchema("forms", []byte(benchFormSchema))
	if err != nil {
		b.Fatal(err)
	}
	doc := benchdoc.Doc(1<<10, 1)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		errs, err := c.validateWithin(context.Background(), nil, doc, nil)
		if err != nil || len(errs) > 0 {
			b.Fatal(err, errs)
		}
	}
}

const benchFormSchema = `{
  "type": "object",
  "required": ["email", "name", "items", "n"],
  "additionalProperties": false,
  "properties": {
    "email": {"type": "string", "format": "email", "maxLength": 254},
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "phone": {"type": "string", "pattern": "^555-[0-9]{4}$"},
    "notes": {"type": "string", "maxLength": 2000},
    "n": {"type": "integer", "minimum": 0},
    "items": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {
    "item": {
      "type": "object",
      "required": ["sku", "qty", "price"],
      "additionalProperties": false,
      "properties": {
        "sku": {"type": "string", "pattern": "^SKU-[0-9]{6}$"},
        "qty": {"type": "integer", "minimum": 1, "maximum": 99},
        "price": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "uniqueItems": true}
      }
    }
  }
}`
