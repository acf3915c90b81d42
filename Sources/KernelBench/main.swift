// kernel-bench: times MatrixProducts on the shapes the headline model uses
// (default sizes: E = 512, U = 32, 4U = 128, 32 rows per rank) and prints
// GFLOP/s, one line per shape. scripts/bench-kernels.sh builds it in
// release and puts numpy's numbers next to these.
//
//     kernel-bench [--repeats N] [--min-ms X] [--activation-sweep S]
//
// --activation-sweep S also checks the vector sigmoid and tanh against
// Double on every S-th float bit pattern (S = 1: all 2³² of them, about
// three minutes) and prints the largest error in ulps.
//
// Each shape runs `repeats` timed rounds (default 9) of as many calls as
// fill `min-ms` milliseconds (default 20); the best round counts, since on
// a shared machine the noise only ever adds time.
import Foundation
import Network

struct Options {
    var repeats = 9
    var minSeconds = 0.020
    var sweepStride = 0

    static let usage =
        "usage: kernel-bench [--repeats N] [--min-ms X] [--activation-sweep S]"

    init(_ arguments: [String]) {
        var rest = arguments.dropFirst()
        while let flag = rest.popFirst() {
            if flag == "-h" || flag == "--help" {
                print(Options.usage)
                exit(0)
            }
            guard
                ["--repeats", "--min-ms", "--activation-sweep"].contains(flag)
            else { Options.fail("unknown option '\(flag)'") }
            guard let value = rest.popFirst(), let number = Double(value),
                number > 0
            else { Options.fail("\(flag) expects a positive number") }
            switch flag {
            case "--repeats": repeats = Int(number)
            case "--min-ms": minSeconds = number / 1000
            default: sweepStride = Int(number)
            }
        }
    }

    /// A bad command line: says why, with the usage, and exits 2.
    static func fail(_ reason: String) -> Never {
        FileHandle.standardError.write(
            Data("kernel-bench: \(reason)\n\(usage)\n".utf8))
        exit(2)
    }
}

enum Form: String {
    case nn = "A·B", tn = "Aᵀ·B", nt = "A·Bᵀ"
}

struct Shape {
    let name: String
    let form: Form
    let m, n, k: Int
    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
}

let distinctCounts = [2700, 400]
var shapes: [Shape] = []
for nu in distinctCounts {
    shapes.append(Shape(name: "proj_nu\(nu)", form: .nn, m: nu, n: 128, k: 512))
    shapes.append(Shape(name: "dK_nu\(nu)", form: .tn, m: 512, n: 128, k: nu))
    shapes.append(Shape(name: "dxu_nu\(nu)", form: .nt, m: nu, n: 512, k: 128))
}
// One piece of the embedding rows' product as ranks share it out: 64 rows
// times Kᵀ, which the pass has transposed ([4U, E], read in place).
shapes.append(Shape(name: "dxu_piece64", form: .nn, m: 64, n: 512, k: 128))
shapes += [
    Shape(name: "rec_h·R", form: .nn, m: 32, n: 128, k: 32),
    Shape(name: "rec_hᵀ·dz", form: .tn, m: 32, n: 128, k: 32),
    Shape(name: "rec_dz·Rᵀ", form: .nt, m: 32, n: 32, k: 128),
    Shape(name: "rec_dz·Rt", form: .nn, m: 32, n: 32, k: 128),
]

let start = ContinuousClock.now

/// Seconds since the start, on a monotonic clock.
func now() -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds)
        + Double(d.components.attoseconds) * 1e-18
}

/// `count` floats uniform in [−1, 1) from a fixed linear congruential
/// sequence, so runs are comparable.
func randomBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    for i in 0..<count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        p[i] = Float(Int32(truncatingIfNeeded: state >> 32)) / 2_147_483_648
    }
    return p
}

/// The best time of one call over `options.repeats` rounds.
func bestSeconds(_ options: Options, _ body: () -> Void) -> Double {
    body()
    // Calls per round: enough to fill minSeconds.
    var calls = 1
    while true {
        let t0 = now()
        for _ in 0..<calls { body() }
        let elapsed = now() - t0
        if elapsed >= options.minSeconds { break }
        if elapsed <= 0 {
            calls *= 10
        } else {
            let scaled = Double(calls) * options.minSeconds / elapsed * 1.1
            calls = max(calls + 1, Int(scaled))
        }
    }
    var best = Double.infinity
    for _ in 0..<options.repeats {
        let t0 = now()
        for _ in 0..<calls { body() }
        best = min(best, (now() - t0) / Double(calls))
    }
    return best
}

func run(_ shape: Shape, _ options: Options) -> Double {
    let (m, n, k) = (shape.m, shape.n, shape.k)
    let aCount = m * k, bCount = k * n
    let a = randomBuffer(aCount, seed: 1), b = randomBuffer(bCount, seed: 2)
    let c = randomBuffer(m * n, seed: 3)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    let seconds: Double
    switch shape.form {
    case .nn:
        seconds = bestSeconds(options) {
            MatrixProducts.multiply(
                m: m, n: n, k: k, a, lda: k, b, ldb: n, c, ldc: n)
        }
    case .tn:
        seconds = bestSeconds(options) {
            MatrixProducts.multiplyTransposedA(
                m: m, n: n, k: k, a, lda: m, b, ldb: n, c, ldc: n)
        }
    case .nt:
        seconds = bestSeconds(options) {
            MatrixProducts.multiplyTransposedB(
                m: m, n: n, k: k, a, lda: k, b, ldb: k, c, ldc: n)
        }
    }
    return seconds
}

let options = Options(CommandLine.arguments)
print(
    "# kernel-bench: best of \(options.repeats) rounds, ≥ "
        + "\(Int(options.minSeconds * 1000)) ms each")
print("# shape form m n k microseconds GFLOP/s")
for shape in shapes {
    let seconds = run(shape, options)
    let gflops = shape.flops / seconds / 1e9
    print(
        "gemm", shape.name, shape.form.rawValue, shape.m, shape.n, shape.k,
        String(format: "%.2f", seconds * 1e6), String(format: "%.1f", gflops))
}

// MARK: Activations

/// Elements per second of `f` over a block of 4096 inputs in [−8, 8].
func activationThroughput(
    _ options: Options,
    _ f: (VectorActivations.Vector) -> VectorActivations.Vector
) -> Double {
    let count = 4096
    let input = randomBuffer(count, seed: 9)
    let output = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { input.deallocate(); output.deallocate() }
    for i in 0..<count { input[i] *= 8 }
    let seconds = bestSeconds(options) {
        var i = 0
        while i < count {
            let x = UnsafeRawPointer(input + i).loadUnaligned(
                as: VectorActivations.Vector.self)
            UnsafeMutableRawPointer(output + i).storeBytes(
                of: f(x), as: VectorActivations.Vector.self)
            i += 16
        }
    }
    return Double(count) / seconds
}

/// The error of `got` in units in the last place of the float binade that
/// holds `exact`.
func ulps(_ got: Float, _ exact: Double) -> Double {
    if got.isNaN || exact.isNaN {
        return got.isNaN == exact.isNaN ? 0 : .infinity
    }
    let binade = exact == 0 ? -126 : max(Int(exact.exponent), -126)
    return abs(Double(got) - exact)
        / Double(
            sign: .plus, exponent: binade - 23,
            significand: 1)
}

/// The worst error of `f` against `reference` over every `stride`-th float.
func sweep(
    stride: Int,
    _ f: (VectorActivations.Vector) -> VectorActivations.Vector,
    _ reference: (Double) -> Double
) -> (ulps: Double, at: Float) {
    var worst = (ulps: 0.0, at: Float(0))
    var lanes = VectorActivations.Vector()
    var filled = 0
    func flush() {
        let out = f(lanes)
        for l in 0..<filled {
            let e = ulps(out[l], reference(Double(lanes[l])))
            if e > worst.ulps { worst = (e, lanes[l]) }
        }
        filled = 0
    }
    var bits: UInt64 = 0
    while bits < 1 << 32 {
        lanes[filled] = Float(bitPattern: UInt32(bits))
        filled += 1
        if filled == 16 { flush() }
        bits += UInt64(stride)
    }
    if filled > 0 { flush() }
    return worst
}

print("# activation  ns/element (inputs in [-8, 8])")
for (name, f) in [
    ("sigmoid", VectorActivations.sigmoid),
    ("tanh", VectorActivations.tanh),
] as [(String, (VectorActivations.Vector) -> VectorActivations.Vector)] {
    let rate = activationThroughput(options, f)
    print("activation", name, String(format: "%.3f", 1e9 / rate))
}
if options.sweepStride > 0 {
    let s = sweep(stride: options.sweepStride, VectorActivations.sigmoid) {
        1 / (1 + Foundation.exp(-$0))
    }
    print("sweep sigmoid max", String(format: "%.3f", s.ulps), "ulp at", s.at)
    let t = sweep(stride: options.sweepStride, VectorActivations.tanh) {
        Foundation.tanh($0)
    }
    print("sweep tanh max", String(format: "%.3f", t.ulps), "ulp at", t.at)
}

// MARK: Optimizer

/// Nanoseconds per updated weight of RMSprop's sparse step on the
/// embedding's shape: `rows` distinct rows of a [10000, 512] table a step,
/// a different set each step, with the model's 80 k dense weights beside
/// it. Uniform sets give each row a short wait between updates, as
/// uniform ids do; `zipf` draws them by 1/rank, as words come, so rare
/// rows wait long and carry many pending decays.
func rmspropSparse(_ options: Options, rows: Int, zipf: Bool = false)
    -> Double
{
    let tableRows = 10000, width = 512, dense = 80_000
    let count = dense + tableRows * width
    var parameters = [Float](repeating: 0.01, count: count)
    let gradients = [Float](repeating: 0.001, count: count)
    var optimizer = RMSprop(count: count)
    let rowGradients = randomBuffer(rows * width, seed: 11)
    defer { rowGradients.deallocate() }
    var generator = SystemRandomNumberGenerator()
    // Cumulative 1/rank weights, for drawing Zipf-distributed ids.
    var cumulative: [Double] = []
    var total = 0.0
    for r in 1...tableRows {
        total += 1 / Double(r)
        cumulative.append(total)
    }
    func zipfSet() -> [Int32] {
        var set = Set<Int32>()
        while set.count < rows {
            let u = Double.random(in: 0..<total, using: &generator)
            var lo = 0, hi = tableRows - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            set.insert(Int32(lo))
        }
        return set.sorted()
    }
    let sets: [[Int32]] = (0..<(zipf ? 512 : 16)).map { _ in
        zipf
            ? zipfSet()
            : Array((0..<Int32(tableRows)).shuffled(using: &generator)[..<rows])
                .sorted()
    }
    var next = 0
    let seconds = bestSeconds(options) {
        sets[next].withUnsafeBufferPointer { ids in
            optimizer.applySparse(
                to: &parameters, gradients: gradients, blockOffset: dense,
                rowWidth: width, rowCount: tableRows, rows: ids,
                rowGradients: rowGradients)
        }
        next = (next + 1) % sets.count
    }
    return seconds * 1e9 / Double(rows * width)
}

print("# optimizer  ns per updated embedding weight")
print(
    "optimizer rmsprop_sparse_2700",
    String(
        format: "%.3f", rmspropSparse(options, rows: 2700)))
print(
    "optimizer rmsprop_sparse_zipf_450",
    String(
        format: "%.3f", rmspropSparse(options, rows: 450, zipf: true)))

// MARK: Products on table rows

/// The input projection and the kernel gradient of `nu` random distinct
/// rows of a [10000, 512] table: gathered first, and read in place.
func tableRowProducts(_ options: Options, nu: Int) {
    let tableRows = 10000, e = 512, g4 = 128
    let table = randomBuffer(tableRows * e, seed: 21)
    let gathered = randomBuffer(nu * e, seed: 22)
    let kernel = randomBuffer(e * g4, seed: 23)
    let projection = randomBuffer(nu * g4, seed: 24)
    let dK = randomBuffer(e * g4, seed: 25)
    defer {
        for p in [table, gathered, kernel, projection, dK] { p.deallocate() }
    }
    var generator = SystemRandomNumberGenerator()
    let sets: [[Int32]] = (0..<16).map { _ in
        Array((0..<Int32(tableRows)).shuffled(using: &generator)[..<nu])
    }
    var next = 0
    func gather(_ ids: [Int32]) {
        for (slot, id) in ids.enumerated() {
            (gathered + slot * e).update(from: table + Int(id) * e, count: e)
        }
    }
    let gatheredSeconds = bestSeconds(options) {
        let ids = sets[next]
        next = (next + 1) % sets.count
        gather(ids)
        MatrixProducts.multiply(
            m: nu, n: g4, k: e, gathered, lda: e, kernel, ldb: g4,
            projection, ldc: g4)
        MatrixProducts.multiplyTransposedA(
            m: e, n: g4, k: nu, gathered, lda: e, projection, ldb: g4, dK,
            ldc: g4)
    }
    let inPlaceSeconds = bestSeconds(options) {
        sets[next].withUnsafeBufferPointer { ids in
            MatrixProducts.multiply(
                m: nu, n: g4, k: e, rows: ids.baseAddress!, of: table,
                ldt: e, kernel, ldb: g4, projection, ldc: g4)
            MatrixProducts.multiplyTransposedA(
                m: e, n: g4, k: nu, rows: ids.baseAddress!, of: table,
                ldt: e, projection, ldb: g4, dK, ldc: g4)
        }
        next = (next + 1) % sets.count
    }
    print(
        "rows proj+dK_nu\(nu) gathered",
        String(format: "%.1f", gatheredSeconds * 1e6), "in-place",
        String(format: "%.1f", inPlaceSeconds * 1e6), "microseconds")
}
tableRowProducts(options, nu: 2700)
tableRowProducts(options, nu: 400)
