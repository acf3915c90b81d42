import Dispatch
import XCTest

@testable import Network

/// The three products against references, on every edge of the blocking:
/// sizes around the vector width (16), the panel width (64), the tile
/// height (6), the depth block (256) and the column block (512), with
/// k = 0, leading dimensions wider than the matrices, and both values of
/// `accumulate`.
///
/// Each result is checked two ways:
/// - exactly against a Float reference that does what the documentation
///   promises: c = fma(a_p, b_p, c) for p in increasing order, starting
///   from C or zero;
/// - against a Double reference within the error bound of such a chain,
///   |ĉ − c| ≤ (k + 2) · 2⁻²⁴ · (|c₀| + Σ_p |a_p · b_p|), which catches a
///   Float reference that is wrong in the same way as the kernel.
///
/// The padding of A, B and C (columns between the width and the leading
/// dimension) holds NaN or a sentinel: a kernel that reads A's or B's
/// padding gets NaN into C, and one that writes C's padding changes the
/// sentinel.
final class MatrixProductTests: XCTestCase {
    enum Form: CaseIterable { case plain, transposedA, transposedB }

    /// A deterministic generator, so failures can be reproduced.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 11
        }
        mutating func float() -> Float {
            Float(Double(next() % (1 << 24)) / Double(1 << 23) - 1)
        }
        mutating func int(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + Int(next() % UInt64(range.count))
        }
    }

    static let sentinel: Float = 12345.5

    /// Runs one product and checks it; returns a description of the first
    /// wrong element, or nil.
    func check(
        _ form: Form, m: Int, n: Int, k: Int, accumulate: Bool,
        pad: (a: Int, b: Int, c: Int), generator g: inout Generator
    ) -> String? {
        // Stored shapes: A is [m, k] or [k, m]; B is [k, n] or [n, k].
        let (aRows, aCols) = form == .transposedA ? (k, m) : (m, k)
        let (bRows, bCols) = form == .transposedB ? (n, k) : (k, n)
        let lda = aCols + pad.a, ldb = bCols + pad.b, ldc = n + pad.c
        var a = [Float](repeating: .nan, count: max(aRows * lda, 1))
        var b = [Float](repeating: .nan, count: max(bRows * ldb, 1))
        var c = [Float](repeating: Self.sentinel, count: max(m * ldc, 1))
        for r in 0..<aRows { for j in 0..<aCols { a[r * lda + j] = g.float() } }
        for r in 0..<bRows { for j in 0..<bCols { b[r * ldb + j] = g.float() } }
        for r in 0..<m { for j in 0..<n { c[r * ldc + j] = g.float() } }
        let c0 = c

        func aAt(_ i: Int, _ p: Int) -> Float {
            form == .transposedA ? a[p * lda + i] : a[i * lda + p]
        }
        func bAt(_ p: Int, _ j: Int) -> Float {
            form == .transposedB ? b[j * ldb + p] : b[p * ldb + j]
        }

        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    let (pa, pb, pc) = (
                        ap.baseAddress!, bp.baseAddress!,
                        cp.baseAddress!
                    )
                    switch form {
                    case .plain:
                        MatrixProducts.multiply(
                            m: m, n: n, k: k, pa, lda: lda, pb, ldb: ldb, pc,
                            ldc: ldc, accumulate: accumulate)
                    case .transposedA:
                        MatrixProducts.multiplyTransposedA(
                            m: m, n: n, k: k, pa, lda: lda, pb, ldb: ldb, pc,
                            ldc: ldc, accumulate: accumulate)
                    case .transposedB:
                        MatrixProducts.multiplyTransposedB(
                            m: m, n: n, k: k, pa, lda: lda, pb, ldb: ldb, pc,
                            ldc: ldc, accumulate: accumulate)
                    }
                }
            }
        }

        let shape =
            "\(form) m=\(m) n=\(n) k=\(k) accumulate=\(accumulate) "
            + "lda=\(lda) ldb=\(ldb) ldc=\(ldc)"
        for i in 0..<m {
            for j in 0..<n {
                let start: Float = accumulate ? c0[i * ldc + j] : 0
                var chain = start
                var exact = Double(start)
                var magnitude = Double(abs(start))
                for p in 0..<k {
                    let x = aAt(i, p), y = bAt(p, j)
                    chain = chain.addingProduct(x, y)
                    exact += Double(x) * Double(y)
                    magnitude += abs(Double(x) * Double(y))
                }
                let got = c[i * ldc + j]
                let bound = Double(k + 2) * 0x1p-24 * magnitude
                if got != chain || !(abs(Double(got) - exact) <= bound) {
                    return "\(shape): C[\(i), \(j)] = \(got), FMA chain "
                        + "\(chain), exact \(exact) (bound \(bound))"
                }
            }
            for j in n..<ldc where c[i * ldc + j] != Self.sentinel {
                return "\(shape): wrote the padding C[\(i), \(j)]"
            }
        }
        return nil
    }

    /// Every combination of the small edge sizes, k short.
    func testAllSmallEdgeShapes() {
        var g = Generator(state: 1)
        let sizes = [0, 1, 2, 3, 5, 6, 7, 15, 16, 17, 31, 33, 63, 64, 65]
        let depths = [0, 1, 2, 17, 33]
        for form in Form.allCases {
            for accumulate in [false, true] {
                for m in sizes {
                    for n in sizes {
                        for k in depths {
                            let pad = (g.int(0...3), g.int(0...3), g.int(0...3))
                            if let failure = check(
                                form, m: m, n: n, k: k, accumulate: accumulate,
                                pad: pad, generator: &g)
                            {
                                XCTFail(failure)
                                return
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sizes that cross the depth block (256), the column block (512) and
    /// several panels, with the other sizes small.
    func testBlockBoundaries() {
        var g = Generator(state: 2)
        let shapes: [(Int, Int, Int)] = [
            (7, 17, 255), (7, 17, 256), (7, 17, 257), (13, 65, 513),
            (3, 511, 9), (3, 512, 9), (3, 513, 9), (2, 530, 40),
            (127, 48, 31), (129, 112, 30), (65, 129, 127), (1, 1, 600),
            (31, 1, 300), (1, 600, 3), (600, 1, 3),
            // Enough row tiles for the narrow tiles' packed panels (and
            // Aᵀ's packed row tiles), with an edge panel, a partial last
            // row tile and more than one depth and column block.
            (100, 37, 300), (97, 530, 270),
        ]
        for form in Form.allCases {
            for accumulate in [false, true] {
                for (m, n, k) in shapes {
                    let pad = (g.int(0...5), g.int(0...5), g.int(0...5))
                    if let failure = check(
                        form, m: m, n: n, k: k, accumulate: accumulate,
                        pad: pad, generator: &g)
                    {
                        XCTFail(failure)
                        return
                    }
                }
            }
        }
    }

    /// Random shapes up to 130 in each size.
    func testRandomShapes() {
        var g = Generator(state: 3)
        for _ in 0..<60 {
            let form = Form.allCases[g.int(0...2)]
            let m = g.int(0...130), n = g.int(0...130), k = g.int(0...130)
            let pad = (g.int(0...9), g.int(0...9), g.int(0...9))
            if let failure = check(
                form, m: m, n: n, k: k, accumulate: g.int(0...1) == 1,
                pad: pad, generator: &g)
            {
                XCTFail(failure)
                return
            }
        }
    }

    /// The model's own shapes at a reduced n_u, including the recurrence.
    func testModelShapes() {
        var g = Generator(state: 4)
        let cases: [(Form, Int, Int, Int)] = [
            (.plain, 70, 128, 512), (.transposedA, 512, 128, 70),
            (.transposedB, 70, 512, 128), (.plain, 32, 128, 32),
            (.transposedA, 32, 128, 32), (.transposedB, 32, 32, 128),
            (.plain, 32, 32, 128), (.plain, 32, 1, 32),
            (.transposedB, 32, 64, 1),
        ]
        for (form, m, n, k) in cases {
            for accumulate in [false, true] {
                if let failure = check(
                    form, m: m, n: n, k: k, accumulate: accumulate,
                    pad: (0, 0, 0), generator: &g)
                {
                    XCTFail(failure)
                    return
                }
            }
        }
    }

    /// The other tiling than the one this machine's build uses (6 × 16
    /// panels without AVX-512, 6 × 64 with it), called directly, against
    /// the products, which must agree to the bit: the rounding does not
    /// depend on the tiling.
    func testBothTilingsAgree() {
        var g = Generator(state: 6)
        let forms: [(Form, BlockedProduct.Form)] = [
            (.plain, .plain), (.transposedA, .transposedA),
            (.transposedB, .transposedB),
        ]
        for (m, n, k) in [
            (13, 130, 40), (7, 47, 300), (32, 128, 32),
            (6, 16, 5), (1, 113, 1), (101, 50, 260),
        ] {
            for (form, blocked) in forms {
                let aCount = m * k, bCount = k * n
                let a = (0..<aCount).map { _ in g.float() }
                let b = (0..<bCount).map { _ in g.float() }
                let start = (0..<(m * n)).map { _ in g.float() }
                // Leading dimensions of the stored shapes, unpadded.
                let lda = form == .transposedA ? m : k
                let ldb = form == .transposedB ? k : n
                var viaProducts = start, viaOther = start
                for accumulate in [false, true] {
                    BlockedProduct.run(
                        blocked, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb,
                        &viaProducts, ldc: n, accumulate: accumulate)
                    BlockedProduct.run(
                        blocked, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb,
                        &viaOther, ldc: n, accumulate: accumulate,
                        wideTiles: !BlockedProduct.wideTiles)
                    XCTAssertEqual(
                        viaProducts, viaOther,
                        "\(form) m=\(m) n=\(n) k=\(k) accumulate=\(accumulate)")
                }
            }
        }
    }

    /// Products on two threads at once: one of them finds the kept scratch
    /// buffer taken and must use its own.
    func testConcurrentProductsUseSeparateScratch() {
        let m = 40, n = 70, k = 300
        var g = Generator(state: 5)
        let a = (0..<(m * k)).map { _ in g.float() }
        let b = (0..<(n * k)).map { _ in g.float() }
        var expected = [Float](repeating: 0, count: m * n)
        MatrixProducts.multiplyTransposedB(
            m: m, n: n, k: k, a, lda: k, b, ldb: k, &expected, ldc: n)
        let results = UnsafeMutablePointer<Float>.allocate(capacity: 8 * m * n)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for _ in 0..<4 {
                MatrixProducts.multiplyTransposedB(
                    m: m, n: n, k: k, a, lda: k, b, ldb: k,
                    results + t * m * n, ldc: n)
            }
        }
        for t in 0..<8 {
            let got = results + t * m * n
            if let i = (0..<(m * n)).first(where: { got[$0] != expected[$0] }) {
                XCTFail("call \(t): C[\(i)] = \(got[i]), not \(expected[i])")
            }
        }
    }
}

/// The products that read A's rows from a table by index, against the
/// products on the same rows gathered first: the same bits, for both
/// tilings, on shapes around the tile height, the depth block and the
/// packing threshold (16 tiles), with rows out of order and NaN between
/// the table's columns and its leading dimension (a kernel that reads
/// there gets NaN into C).
final class TableRowProductTests: XCTestCase {
    func testTableRowsMatchGatheredRows() {
        var g = MatrixProductTests.Generator(state: 8)
        let tableRows = 300
        for (m, n, k) in [
            (1, 16, 7), (5, 20, 33), (6, 128, 64), (13, 130, 300),
            (97, 48, 257), (200, 128, 40),
        ] {
            for transposed in [false, true] {
                // Plain: A[m, k], row i is table row ids[i] (width k).
                // Transposed: A[k, m], row p is table row ids[p] (width m).
                let picked = transposed ? k : m
                let width = transposed ? m : k
                let ldt = width + 3
                var table = [Float](repeating: .nan, count: tableRows * ldt)
                for r in 0..<tableRows {
                    for j in 0..<width { table[r * ldt + j] = g.float() }
                }
                let ids = (0..<picked).map { _ in
                    Int32(g.int(0...(tableRows - 1)))
                }
                var gathered = [Float](repeating: 0, count: picked * width)
                for (slot, id) in ids.enumerated() {
                    for j in 0..<width {
                        gathered[slot * width + j] = table[Int(id) * ldt + j]
                    }
                }
                let b = (0..<(k * n)).map { _ in g.float() }
                let start = (0..<(m * n)).map { _ in g.float() }
                for wide in [false, true] {
                    for accumulate in [false, true] {
                        var expected = start, got = start
                        let form: BlockedProduct.Form =
                            transposed ? .transposedA : .plain
                        BlockedProduct.run(
                            form, m: m, n: n, k: k, gathered, lda: width, b,
                            ldb: n, &expected, ldc: n, accumulate: accumulate,
                            wideTiles: wide)
                        ids.withUnsafeBufferPointer { rows in
                            BlockedProduct.run(
                                form, m: m, n: n, k: k, table, lda: ldt,
                                aRows: rows.baseAddress!, b, ldb: n, &got,
                                ldc: n, accumulate: accumulate,
                                wideTiles: wide)
                        }
                        let label =
                            "transposed=\(transposed) m=\(m) n=\(n) k=\(k) "
                            + "wide=\(wide) accumulate=\(accumulate)"
                        if let i = (0..<(m * n)).first(where: {
                            got[$0].bitPattern != expected[$0].bitPattern
                        }) {
                            XCTFail(
                                "\(label): C[\(i)] = \(got[i]), gathered "
                                    + "\(expected[i])")
                            return
                        }
                    }
                }
            }
        }
    }

    /// The public entry points pass the rows through.
    func testPublicEntryPoints() {
        var g = MatrixProductTests.Generator(state: 9)
        let (tableRows, e, n, nu) = (40, 24, 32, 11)
        let table = (0..<(tableRows * e)).map { _ in g.float() }
        let ids: [Int32] = (0..<nu).map { _ in
            Int32(g.int(0...(tableRows - 1)))
        }
        var gathered: [Float] = []
        for id in ids { gathered += table[(Int(id) * e)..<(Int(id) * e + e)] }
        let b = (0..<(e * n)).map { _ in g.float() }
        let dy = (0..<(nu * n)).map { _ in g.float() }
        var expected = [Float](repeating: 0, count: nu * n)
        var got = expected
        MatrixProducts.multiply(
            m: nu, n: n, k: e, gathered, lda: e, b, ldb: n, &expected, ldc: n)
        ids.withUnsafeBufferPointer { rows in
            MatrixProducts.multiply(
                m: nu, n: n, k: e, rows: rows.baseAddress!, of: table, ldt: e,
                b, ldb: n, &got, ldc: n)
        }
        XCTAssertTrue(got == expected, "multiply(rows:) differs")
        var expectedT = [Float](repeating: 0, count: e * n)
        var gotT = expectedT
        MatrixProducts.multiplyTransposedA(
            m: e, n: n, k: nu, gathered, lda: e, dy, ldb: n, &expectedT, ldc: n)
        ids.withUnsafeBufferPointer { rows in
            MatrixProducts.multiplyTransposedA(
                m: e, n: n, k: nu, rows: rows.baseAddress!, of: table, ldt: e,
                dy, ldb: n, &gotT, ldc: n)
        }
        XCTAssertTrue(
            gotT == expectedT, "multiplyTransposedA(rows:) differs")
    }
}
