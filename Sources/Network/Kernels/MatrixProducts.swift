/// Single-precision matrix products on row-major buffers.
///
/// Each function computes `C (+)= op(A) · op(B)` where every matrix is
/// row-major with an explicit leading dimension (the distance in floats
/// between two rows), so a product can read a block of a larger buffer.
/// Shapes are written `[rows, cols]`. `accumulate` adds to `C` instead of
/// overwriting it; the backward pass uses that to sum gradient parts.
/// Any m, n, k ≥ 0 work; with k = 0, C becomes zero, or is left as it is
/// when accumulating. C must not overlap A or B.
///
/// Every multiply-add is a fused `addingProduct`, applied for each element
/// of C in increasing order of the shared index, so debug and release
/// builds round the same way, and the result does not depend on the
/// blocking. The work is done by `BlockedProduct` and `MicroKernel`:
/// 6 × 64 tiles of C in AVX-512 registers, blocked over k.
public enum MatrixProducts {
    /// `C[m, n] (+)= A[m, k] · B[k, n]`.
    ///
    /// The model's calls: the LSTM input projection
    /// `[n_u, E] · [E, 4U]` (m = n_u ≈ 2700 distinct ids per batch,
    /// n = 128, k = 512 at the default sizes); the recurrence
    /// `h_{t−1}[rows, U] · R[U, 4U]` (m = 32, n = 128, k = 32) and its
    /// gradient `dz[rows, 4U] · Rᵀ[4U, U]` (m = 32, n = 32, k = 128, with Rᵀ
    /// transposed once per backward pass); the heads (n = 1 or H).
    public static func multiply(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        BlockedProduct.run(
            .plain, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, c, ldc: ldc,
            accumulate: accumulate)
    }

    /// `C[m, n] (+)= A[k, m]ᵀ · B[k, n]`: the weight gradient `Xᵀ · dY`.
    ///
    /// The model's calls: the LSTM kernel gradient `xuᵀ · dproj`,
    /// `[n_u, E]ᵀ · [n_u, 4U]` (m = 512, n = 128, k = n_u ≈ 2700, the long
    /// shared dimension the k blocking is for); the recurrent gradient
    /// `h_{t−1}ᵀ · dz`, `[rows, U]ᵀ · [rows, 4U]` (m = 32, n = 128, k = 32);
    /// the dense and head kernels' gradients (k = rows).
    public static func multiplyTransposedA(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        BlockedProduct.run(
            .transposedA, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, c,
            ldc: ldc, accumulate: accumulate)
    }

    /// `C[m, n] (+)= A[m, k] · B[k, n]` where row i of A is row `rows[i]`
    /// of `table` (rows `ldt` apart): the input projection of the distinct
    /// ids, read from the embedding in place. Rounds as `multiply` on the
    /// gathered rows.
    public static func multiply(
        m: Int, n: Int, k: Int,
        rows: UnsafePointer<Int32>, of table: UnsafePointer<Float>, ldt: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        BlockedProduct.run(
            .plain, m: m, n: n, k: k, table, lda: ldt, aRows: rows, b,
            ldb: ldb, c, ldc: ldc, accumulate: accumulate)
    }

    /// `C[m, n] (+)= A[k, m]ᵀ · B[k, n]` where row p of A is row `rows[p]`
    /// of `table` (rows `ldt` apart): the LSTM kernel's gradient from the
    /// distinct ids' embedding rows in place. Rounds as
    /// `multiplyTransposedA` on the gathered rows.
    public static func multiplyTransposedA(
        m: Int, n: Int, k: Int,
        rows: UnsafePointer<Int32>, of table: UnsafePointer<Float>, ldt: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        BlockedProduct.run(
            .transposedA, m: m, n: n, k: k, table, lda: ldt, aRows: rows, b,
            ldb: ldb, c, ldc: ldc, accumulate: accumulate)
    }

    /// `C[m, n] (+)= A[m, k] · B[n, k]ᵀ`: the input gradient `dY · Wᵀ`.
    ///
    /// The model's calls: the embedding rows' gradient `dproj · Kᵀ`,
    /// `[n_u, 4U] · [E, 4U]ᵀ` (m = n_u ≈ 2700, n = 512, k = 128); the dense
    /// layers' input gradients (k = H or 1). Blocks of Bᵀ are copied into a
    /// reused scratch buffer first, `BlockedProduct.depthBlock ×
    /// columnBlock` floats at a time; that copy costs k·n loads and
    /// stores, so for a small product called many times with the same B
    /// (the recurrence) transpose B once and call `multiply` instead.
    public static func multiplyTransposedB(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        BlockedProduct.run(
            .transposedB, m: m, n: n, k: k, a, lda: lda, b, ldb: ldb, c,
            ldc: ldc, accumulate: accumulate)
    }
}
