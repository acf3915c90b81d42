/// A small seeded random generator (SplitMix64) with a fixed, documented
/// output, so that a shuffle seed gives the same row order on every
/// platform and Swift version (the standard library's generators and
/// `shuffle(using:)` promise no such thing).
struct SeededGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform integer in 0..<bound, without modulo bias: draws that
    /// fall in the incomplete last block of size `bound` are redrawn.
    mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let usable = UInt64.max - (UInt64.max % bound + 1) % bound
        while true {
            let x = next()
            if x <= usable { return x % bound }
        }
    }
}

/// `items` in a random order fixed by `seed` (Fisher-Yates from the end).
func seededShuffle<T>(_ items: [T], seed: UInt64) -> [T] {
    var result = items
    var generator = SeededGenerator(seed: seed)
    var i = result.count - 1
    while i > 0 {
        let j = Int(generator.below(UInt64(i + 1)))
        result.swapAt(i, j)
        i -= 1
    }
    return result
}

/// How prepare.json describes a shuffle with `seed`.
func shuffleDescription(seed: Int?) -> String {
    guard seed != nil else { return "none: rows kept in file order" }
    return "Fisher-Yates from the last row, j uniform in 0...i, "
        + "SplitMix64 generator seeded with shuffle_seed, modulo with rejection"
}
