/// Matrix transposition on row-major buffers, for products that read a
/// matrix's transpose many times (the recurrence's Rᵀ, the shared-out
/// embedding rows' Kᵀ).
public enum Transpose {
    /// The side of the square tiles the matrix is copied in.
    ///
    /// Row by row, one source row scatters to as many output rows as it
    /// has columns, each a whole output row apart: at the model's Kᵀ
    /// (512 × 128 into 128 × 512) those lines are 2 KiB apart and fall
    /// into two L1 sets, which evict each other long before a line is
    /// full (about 0.25 ms a pass, measured with perf on a 2-rank run).
    /// A 16 × 16 tile touches 16 lines on each side, which stay in L1
    /// until the tile is done.
    static let tile = 16

    /// `out[cols, rows] = a[rows, cols]ᵀ`: `out[j * ldo + i] =
    /// a[i * lda + j]`. The two must not overlap.
    public static func run(
        rows: Int, cols: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ out: UnsafeMutablePointer<Float>, ldo: Int
    ) {
        precondition(rows >= 0 && cols >= 0, "negative matrix size")
        precondition(lda >= cols && ldo >= rows, "leading dimension too small")
        var i0 = 0
        while i0 < rows {
            let i1 = min(i0 + tile, rows)
            var j0 = 0
            while j0 < cols {
                let j1 = min(j0 + tile, cols)
                for i in i0..<i1 {
                    let from = a + i * lda
                    for j in j0..<j1 { out[j * ldo + i] = from[j] }
                }
                j0 = j1
            }
            i0 = i1
        }
    }
}
