/// The register-blocked inner kernel of the matrix products.
///
/// A tile of C, up to `MicroKernel.rows` rows by 16, 32, 48 or 64 columns,
/// lives in vector registers while the kernel walks the shared dimension:
/// for every step p it loads one row of B̂ (the right operand, `width`
/// floats), broadcasts one element of Â (the left operand) per tile row
/// and adds their product with fused multiply-adds. At 6 × 64 that is 24
/// accumulators, 4 loads of B̂ and 6 broadcasts per 24 FMAs, which keeps
/// the FMA units busy and stays within the 32 vector registers of AVX-512.
///
/// Each element of C is therefore `c = fma(a_p, b_p, c)` in increasing p,
/// starting from C (accumulate) or zero: the rounding does not depend on
/// the tile or block sizes, nor on where the element sits in the matrix.
enum MicroKernel {
    /// Rows of C per tile.
    static let rows = 6

    /// Where the rows of one Â tile start, relative to its first row: row r
    /// of the tile is read at `a + offset(r) + p · step`.
    ///
    /// A tile with fewer than `rows` valid rows repeats its last valid row
    /// in the unused slots, so the kernel never reads outside A; those
    /// slots compute throwaway values that are never stored.
    struct RowOffsets {
        let o1, o2, o3, o4, o5: Int

        /// Offsets for rows `rowStride` apart, of which `valid` (1...6)
        /// exist.
        @inline(__always)
        init(rowStride: Int, valid: Int) {
            let last = valid - 1
            o1 = min(1, last) &* rowStride
            o2 = min(2, last) &* rowStride
            o3 = min(3, last) &* rowStride
            o4 = min(4, last) &* rowStride
            o5 = min(5, last) &* rowStride
        }

        /// Offsets for rows `rows[0..<valid]` of a table whose rows are
        /// `rowStride` apart, relative to row `rows[0]`.
        @inline(__always)
        init(rows: UnsafePointer<Int32>, rowStride: Int, valid: Int) {
            let last = valid - 1
            let first = Int(rows[0])
            func at(_ r: Int) -> Int {
                (Int(rows[min(r, last)]) &- first) &* rowStride
            }
            o1 = at(1)
            o2 = at(2)
            o3 = at(3)
            o4 = at(4)
            o5 = at(5)
        }
    }

    /// `C[rows, cols] (+)= Â[rows, k] · B̂[k, cols]` for one tile.
    ///
    /// - Â element (r, p) is at `a + offsets(r) + p · aStep`;
    /// - B̂ row p is `R.width` readable floats at `b + p · ldb`, of which
    ///   the first `cols` (≥ 1) matter;
    /// - C row r is at `c + r · ldc`; only `rows` × `cols` are read/written.
    ///
    /// `load` starts from C instead of zero.
    @inline(__always)
    static func tile<R: TileRow>(
        _: R.Type, k: Int,
        a: UnsafePointer<Float>, offsets o: RowOffsets, aStep: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        rows: Int, cols: Int, load: Bool
    ) {
        var c0 = R(), c1 = R(), c2 = R(), c3 = R(), c4 = R(), c5 = R()
        if load {
            c0 = R(c, count: cols)
            if rows > 1 { c1 = R(c + ldc, count: cols) }
            if rows > 2 { c2 = R(c + 2 &* ldc, count: cols) }
            if rows > 3 { c3 = R(c + 3 &* ldc, count: cols) }
            if rows > 4 { c4 = R(c + 4 &* ldc, count: cols) }
            if rows > 5 { c5 = R(c + 5 &* ldc, count: cols) }
        }
        var ap = a, bp = b
        for _ in 0..<k {
            let bRow = R(bp)
            c0.addProduct(ap[0], bRow)
            c1.addProduct(ap[o.o1], bRow)
            c2.addProduct(ap[o.o2], bRow)
            c3.addProduct(ap[o.o3], bRow)
            c4.addProduct(ap[o.o4], bRow)
            c5.addProduct(ap[o.o5], bRow)
            ap += aStep
            bp += ldb
        }
        c0.store(c, count: cols)
        if rows > 1 { c1.store(c + ldc, count: cols) }
        if rows > 2 { c2.store(c + 2 &* ldc, count: cols) }
        if rows > 3 { c3.store(c + 3 &* ldc, count: cols) }
        if rows > 4 { c4.store(c + 4 &* ldc, count: cols) }
        if rows > 5 { c5.store(c + 5 &* ldc, count: cols) }
    }
}

/// One row of a C tile: `width` consecutive floats held as 16-lane
/// vectors, so that a tile is a handful of registers.
protocol TileRow {
    /// Floats in the row: 16, 32, 48 or 64.
    static var width: Int { get }
    /// Zeros.
    init()
    /// Loads `width` floats from `p` (any alignment).
    init(_ p: UnsafePointer<Float>)
    /// `self += a · b`, lane by lane, fused.
    mutating func addProduct(_ a: Float, _ b: Self)
    /// Stores `width` floats to `p` (any alignment).
    func store(_ p: UnsafeMutablePointer<Float>)
}

extension TileRow {
    /// Loads the first `count` (≤ width) floats from `p`, the rest zero;
    /// reads nothing past `p + count`.
    @inline(__always)
    init(_ p: UnsafePointer<Float>, count: Int) {
        if count == Self.width {
            self.init(p)
        } else {
            self = withPaddedRow { row in
                row.update(from: p, count: count)
                return Self(row)
            }
        }
    }

    /// Stores the first `count` (≤ width) floats to `p`; writes nothing
    /// past `p + count`.
    @inline(__always)
    func store(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if count == Self.width {
            store(p)
        } else {
            withPaddedRow { row in
                store(row)
                p.update(from: row, count: count)
            }
        }
    }
}

/// Runs `body` on 64 zeroed floats on the stack, for the partial rows at
/// the right edge of C.
@inline(__always)
private func withPaddedRow<T>(
    _ body: (UnsafeMutablePointer<Float>) -> T
) -> T {
    var row = SIMD64<Float>()
    return withUnsafeMutableBytes(of: &row) { raw in
        body(raw.baseAddress!.bindMemory(to: Float.self, capacity: 64))
    }
}

@inline(__always)
private func loadVector(_ p: UnsafePointer<Float>, _ i: Int)
    -> SIMD16<Float>
{
    UnsafeRawPointer(p + 16 &* i).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
private func storeVector(
    _ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>, _ i: Int
) {
    UnsafeMutableRawPointer(p + 16 &* i).storeBytes(
        of: v, as: SIMD16<Float>.self)
}

struct TileRow16: TileRow {
    var v0: SIMD16<Float>
    static var width: Int { 16 }
    @inline(__always) init() { v0 = .zero }
    @inline(__always) init(_ p: UnsafePointer<Float>) {
        v0 = loadVector(p, 0)
    }
    @inline(__always) mutating func addProduct(_ a: Float, _ b: Self) {
        let s = SIMD16<Float>(repeating: a)
        v0 = v0.addingProduct(s, b.v0)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        storeVector(v0, p, 0)
    }
}

struct TileRow32: TileRow {
    var v0, v1: SIMD16<Float>
    static var width: Int { 32 }
    @inline(__always) init() { v0 = .zero; v1 = .zero }
    @inline(__always) init(_ p: UnsafePointer<Float>) {
        v0 = loadVector(p, 0)
        v1 = loadVector(p, 1)
    }
    @inline(__always) mutating func addProduct(_ a: Float, _ b: Self) {
        let s = SIMD16<Float>(repeating: a)
        v0 = v0.addingProduct(s, b.v0)
        v1 = v1.addingProduct(s, b.v1)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        storeVector(v0, p, 0)
        storeVector(v1, p, 1)
    }
}

struct TileRow48: TileRow {
    var v0, v1, v2: SIMD16<Float>
    static var width: Int { 48 }
    @inline(__always) init() { v0 = .zero; v1 = .zero; v2 = .zero }
    @inline(__always) init(_ p: UnsafePointer<Float>) {
        v0 = loadVector(p, 0)
        v1 = loadVector(p, 1)
        v2 = loadVector(p, 2)
    }
    @inline(__always) mutating func addProduct(_ a: Float, _ b: Self) {
        let s = SIMD16<Float>(repeating: a)
        v0 = v0.addingProduct(s, b.v0)
        v1 = v1.addingProduct(s, b.v1)
        v2 = v2.addingProduct(s, b.v2)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        storeVector(v0, p, 0)
        storeVector(v1, p, 1)
        storeVector(v2, p, 2)
    }
}

struct TileRow64: TileRow {
    var v0, v1, v2, v3: SIMD16<Float>
    static var width: Int { 64 }
    @inline(__always) init() { v0 = .zero; v1 = .zero; v2 = .zero; v3 = .zero }
    @inline(__always) init(_ p: UnsafePointer<Float>) {
        v0 = loadVector(p, 0)
        v1 = loadVector(p, 1)
        v2 = loadVector(p, 2)
        v3 = loadVector(p, 3)
    }
    @inline(__always) mutating func addProduct(_ a: Float, _ b: Self) {
        let s = SIMD16<Float>(repeating: a)
        v0 = v0.addingProduct(s, b.v0)
        v1 = v1.addingProduct(s, b.v1)
        v2 = v2.addingProduct(s, b.v2)
        v3 = v3.addingProduct(s, b.v3)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        storeVector(v0, p, 0)
        storeVector(v1, p, 1)
        storeVector(v2, p, 2)
        storeVector(v3, p, 3)
    }
}
