/// Single-precision matrix products on row-major buffers.
///
/// Each function computes `C (+)= op(A) · op(B)` where every matrix is
/// row-major with an explicit leading dimension (the distance in floats
/// between two rows), so a product can read a block of a larger buffer.
/// Shapes are written `[rows, cols]`. `accumulate` adds to `C` instead of
/// overwriting it; the backward pass uses that to sum gradient parts.
///
/// Every multiply-add is a fused `addingProduct`, so debug and release
/// builds round the same way and the compiler can use the CPU's FMA units.
public enum MatrixProducts {
    /// `C[m, n] (+)= A[m, k] · B[k, n]`.
    public static func multiply(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        for i in 0..<m {
            let ci = c + i * ldc
            if !accumulate { ci.update(repeating: 0, count: n) }
            let ai = a + i * lda
            for p in 0..<k {
                axpy(n, ai[p], b + p * ldb, ci)
            }
        }
    }

    /// `C[m, n] (+)= A[k, m]ᵀ · B[k, n]`: the weight gradient `Xᵀ · dY`.
    public static func multiplyTransposedA(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        if !accumulate {
            for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
        }
        for p in 0..<k {
            let ap = a + p * lda
            let bp = b + p * ldb
            for i in 0..<m {
                axpy(n, ap[i], bp, c + i * ldc)
            }
        }
    }

    /// `C[m, n] (+)= A[m, k] · B[n, k]ᵀ`: the input gradient `dY · Wᵀ`.
    public static func multiplyTransposedB(
        m: Int, n: Int, k: Int,
        _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool = false
    ) {
        for i in 0..<m {
            let ai = a + i * lda
            let ci = c + i * ldc
            for j in 0..<n {
                let d = dot(k, ai, b + j * ldb)
                ci[j] = accumulate ? ci[j] + d : d
            }
        }
    }

    /// `y[0..<n] += alpha · x[0..<n]`.
    @inline(__always)
    static func axpy(
        _ n: Int, _ alpha: Float, _ x: UnsafePointer<Float>,
        _ y: UnsafeMutablePointer<Float>
    ) {
        for j in 0..<n { y[j] = y[j].addingProduct(alpha, x[j]) }
    }

    /// The dot product of `x[0..<n]` and `y[0..<n]`, summed in eight
    /// interleaved lanes so the loop vectorises.
    @inline(__always)
    static func dot(
        _ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>
    ) -> Float {
        var lanes = SIMD8<Float>()
        var j = 0
        while j + 8 <= n {
            let xv = UnsafeRawPointer(x + j).loadUnaligned(
                as: SIMD8<Float>.self)
            let yv = UnsafeRawPointer(y + j).loadUnaligned(
                as: SIMD8<Float>.self)
            lanes = lanes.addingProduct(xv, yv)
            j += 8
        }
        var sum = lanes.sum()
        while j < n {
            sum = sum.addingProduct(x[j], y[j])
            j += 1
        }
        return sum
    }
}
