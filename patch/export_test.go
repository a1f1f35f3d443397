package patch

// What the external tests use that the package does not export.
var (
	ParsePointer = parsePointer
	Identical    = identical
)

// Pointer is pointer, for the external tests.
type Pointer = pointer
