// kernel-bench: times MatrixProducts on the shapes the headline model uses
// (default sizes: E = 512, U = 32, 4U = 128, 32 rows per rank) and prints
// GFLOP/s, one line per shape. scripts/bench-kernels.sh builds it in
// release and puts numpy's numbers next to these.
//
//     kernel-bench [--repeats N] [--min-ms X]
//
// Each shape runs `repeats` timed rounds (default 9) of as many calls as
// fill `min-ms` milliseconds (default 20); the best round counts, since on
// a shared machine the noise only ever adds time.
import Foundation
import Network

struct Options {
    var repeats = 9
    var minSeconds = 0.020

    init(_ arguments: [String]) {
        var rest = arguments.dropFirst()
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst(), let number = Double(value),
                number > 0
            else {
                fatalError("usage: kernel-bench [--repeats N] [--min-ms X]")
            }
            switch flag {
            case "--repeats": repeats = Int(number)
            case "--min-ms": minSeconds = number / 1000
            default: fatalError("unknown option \(flag)")
            }
        }
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
        calls = elapsed <= 0
            ? calls * 10
            : max(calls + 1, Int(Double(calls) * options.minSeconds / elapsed * 1.1))
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
print("# kernel-bench: best of \(options.repeats) rounds, ≥ "
    + "\(Int(options.minSeconds * 1000)) ms each")
print("# shape form m n k microseconds GFLOP/s")
for shape in shapes {
    let seconds = run(shape, options)
    let gflops = shape.flops / seconds / 1e9
    print(
        "gemm", shape.name, shape.form.rawValue, shape.m, shape.n, shape.k,
        String(format: "%.2f", seconds * 1e6), String(format: "%.1f", gflops))
}
