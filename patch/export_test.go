package patch

// Identical is identical, for the external tests.
var Identical = identical
