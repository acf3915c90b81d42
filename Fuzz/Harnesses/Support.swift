// Compiled into every fuzz binary (see scripts/fuzz.sh).

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`, as an array.
func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// Ends the run with a message; libFuzzer records the input as a crash.
/// Used for every outcome other than "a value" or "the reader's own error".
func fuzzFail(_ message: String) -> Never {
    fatalError("fuzz harness: \(message)")
}

/// Exact comparison: Swift's == on strings is canonical equivalence, under
/// which "e\u{301}" equals "\u{E9}"; a reader must not change either.
func sameBytes(_ a: [String], _ b: [String]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { Array($0.utf8) == Array($1.utf8) }
}
