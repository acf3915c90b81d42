import Foundation

/// SHA-256 (FIPS 180-4), for the checksum of a checkpoint and the
/// fingerprint of the data files.
///
/// Written here because Foundation on Linux has no hash, and a checksum
/// that any tool can recompute (`sha256sum`, Python's hashlib) is worth
/// more than a home-made one.
struct SHA256 {
    /// The round constants: the first 32 bits of the fractional parts of
    /// the cube roots of the first 64 primes. Computed rather than typed,
    /// so a typo cannot slip in; the tests check known digests.
    private static let roundConstants: [UInt32] = firstPrimes(64).map {
        fractionBits(cbrt($0))
    }
    /// The initial state: the same for the square roots of the first 8.
    private static let initialState: [UInt32] = firstPrimes(8).map {
        fractionBits($0.squareRoot())
    }

    private var state = SHA256.initialState
    /// Bytes of an unfinished 64-byte block.
    private var pending: [UInt8] = []
    private var byteCount: UInt64 = 0

    init() {}

    /// Hashes `bytes` after everything given before.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        byteCount &+= UInt64(bytes.count)
        var start = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, bytes.count)
            pending += bytes[0..<take]
            start = take
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        guard let base = bytes.baseAddress else { return }
        while bytes.count - start >= 64 {
            compress(base + start)
            start += 64
        }
        pending += bytes[start...]
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest; the hash cannot be updated afterwards.
    mutating func finish() -> [UInt8] {
        let bits = byteCount &* 8
        var tail = pending
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) {
            tail.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift)))
        }
        tail.withUnsafeBytes { raw in
            for block in stride(from: 0, to: raw.count, by: 64) {
                compress(raw.baseAddress! + block)
            }
        }
        pending = []
        return state.flatMap { word in
            [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: word >> $0) }
        }
    }

    /// The digest of `bytes` as 64 lowercase hex digits.
    static func hex(_ bytes: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(bytes)
        return hexString(hash.finish())
    }

    static func hexString(_ digest: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(
            digest.flatMap {
                [digits[Int($0 >> 4)], digits[Int($0 & 15)]]
            })
    }

    /// One 64-byte block into the state.
    private mutating func compress(_ block: UnsafeRawPointer) {
        // A scratch schedule on the stack: a checkpoint of a large model
        // is a million blocks, too many for an array allocation each.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            SHA256.roundConstants.withUnsafeBufferPointer { k in
                compress(block, schedule: w, constants: k)
            }
        }
    }

    private mutating func compress(
        _ block: UnsafeRawPointer,
        schedule w: UnsafeMutableBufferPointer<UInt32>,
        constants k: UnsafeBufferPointer<UInt32>
    ) {
        for t in 0..<16 {
            var word: UInt32 = 0
            for b in 0..<4 {
                word =
                    word << 8
                    | UInt32(
                        block.load(
                            fromByteOffset: 4 * t + b, as: UInt8.self))
            }
            w[t] = word
        }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var (a, b, c, d) = (state[0], state[1], state[2], state[3])
        var (e, f, g, h) = (state[4], state[5], state[6], state[7])
        for t in 0..<64 {
            let sum1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let choose = (e & f) ^ (~e & g)
            let t1 = h &+ sum1 &+ choose &+ k[t] &+ w[t]
            let sum0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let majority = (a & b) ^ (a & c) ^ (b & c)
            let t2 = sum0 &+ majority
            (h, g, f, e) = (g, f, e, d &+ t1)
            (d, c, b, a) = (c, b, a, t1 &+ t2)
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
}

private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 {
    x >> n | x << (32 - n)
}

/// The first `count` primes, as Doubles.
private func firstPrimes(_ count: Int) -> [Double] {
    var primes: [Int] = []
    var candidate = 2
    while primes.count < count {
        if primes.allSatisfy({ candidate % $0 != 0 }) {
            primes.append(candidate)
        }
        candidate += 1
    }
    return primes.map(Double.init)
}

/// The first 32 bits of the fractional part of `x`. Doubles carry 53
/// bits, so for the roots of small primes (below 2^3) these bits are
/// exact.
private func fractionBits(_ x: Double) -> UInt32 {
    let fraction = x - x.rounded(.down)
    return UInt32(fraction * 4_294_967_296)
}
