/// Sigmoid and tanh on 16 lanes at a time, for the LSTM gate loops.
///
/// Both are built on one exponential that returns e^y as an unevaluated
/// sum `hi + lo` (a float and a small correction), so the one division
/// each needs can be corrected for its own rounding and for the rounding
/// of its denominator. The result is then off by little more than its
/// final rounding: over all 2³² float inputs the largest error against
/// Double is 0.765 ulp for sigmoid and 0.777 ulp for tanh (measured with
/// `kernel-bench --activation-sweep 1`; the tests check ≤ 1 ulp on a
/// dense sweep), including the saturated tails, the subnormal outputs of
/// sigmoid below −87, and tanh(x) = x for tiny x. NaN in gives NaN out;
/// ±∞ gives the limits. Only IEEE operations with fixed rounding are used,
/// so the results are the same on every machine, in debug and release
/// builds alike.
///
/// The polynomial coefficients come from
/// `scripts/fit-activation-coefficients.py` (minimax relative error,
/// fitted with numpy and rounded to float one at a time).
public enum VectorActivations {
    public typealias Vector = SIMD16<Float>

    /// The logistic function 1 / (1 + e^−x), lane by lane (see
    /// `sigmoidPiece`).
    @inline(__always)
    public static func sigmoid(_ x: Vector) -> Vector {
        #if HEADLINE_AVX512
            sigmoidPiece(x)
        #else
            Vector(
                lowHalf: sigmoidPiece(x.lowHalf),
                highHalf: sigmoidPiece(x.highHalf))
        #endif
    }

    /// The hyperbolic tangent, lane by lane (see `tanhPiece`).
    @inline(__always)
    public static func tanh(_ x: Vector) -> Vector {
        #if HEADLINE_AVX512
            tanhPiece(x)
        #else
            Vector(
                lowHalf: tanhPiece(x.lowHalf), highHalf: tanhPiece(x.highHalf))
        #endif
    }

    // The arithmetic works on pieces of one vector register: 16 lanes
    // with AVX-512, 8 with AVX2, where 16-lane values, two registers each,
    // left too few registers and the compiler shuffled lanes between
    // 128- and 256-bit halves. Each lane's operations, and so its bits,
    // are the same at either width.
    #if HEADLINE_AVX512
        typealias Piece = SIMD16<Float>
        typealias PieceInt = SIMD16<Int32>
        typealias PieceBits = SIMD16<UInt32>
    #else
        typealias Piece = SIMD8<Float>
        typealias PieceInt = SIMD8<Int32>
        typealias PieceBits = SIMD8<UInt32>
    #endif

    /// The logistic function 1 / (1 + e^−x), lane by lane.
    ///
    /// With E = e^−|x| ∈ [0, 1] and D = 1 + E: σ = 1/D for x ≥ 0 and E/D
    /// for x < 0, which never cancels and keeps the tiny values of x ≪ 0.
    @inline(__always)
    static func sigmoidPiece(_ x: Piece) -> Piece {
        // Past |x| = 104, e^−|x| is below half the least subnormal.
        let a = magnitude(x).replacing(with: 104, where: magnitude(x) .> 104)
        let (e, eLow) = exponential(-a)
        // D = 1 + E exactly, as d + dLow (Fast2Sum: 1 ≥ E).
        let d = 1 + e
        let dLow = (e - (d - 1)) + eLow
        let negative = x .< 0
        let numerator = Piece(repeating: 1).replacing(with: e, where: negative)
        let numeratorLow = Piece.zero.replacing(with: eLow, where: negative)
        return correctedQuotient(numerator, numeratorLow, d, dLow)
    }

    /// The hyperbolic tangent, lane by lane.
    ///
    /// For |x| < 0.625, the odd polynomial x + x³·P(x²); above it,
    /// 1 − 2/(1 + e^{2|x|}), whose subtraction cannot cancel there
    /// (2/(1 + e^{2|x|}) < 0.45). The sign is x's, so tanh(−x) = −tanh(x)
    /// exactly and tanh(−0) = −0.
    @inline(__always)
    static func tanhPiece(_ x: Piece) -> Piece {
        let a = magnitude(x)
        // Near zero: a + a³·P(a²), P from the fit script.
        let a2 = a * a
        var p = Piece(repeating: 0x1.1a27fep-9)
        p = horner(p, a2, -0x1.0c5ecep-7)
        p = horner(p, a2, 0x1.63a55p-6)
        p = horner(p, a2, -0x1.b9f188p-5)
        p = horner(p, a2, 0x1.11107ap-3)
        p = horner(p, a2, -0x1.555554p-2)
        let near = a.addingProduct(a2 * a, p)
        // Further out: 1 − 2/G with G = 1 + e^{2|x|}; tanh is 1 in float
        // from |x| ≈ 9.01, so |x| is capped at 10 to keep G finite.
        let capped = a.replacing(with: 10, where: a .> 10)
        let (g, gLow) = exponential(capped + capped)
        let d = g + 1
        let dLow = ((g - d) + 1) + gLow
        let t = correctedQuotient(Piece(repeating: 2), .zero, d, dLow)
        let far = 1 - t
        let result = far.replacing(with: near, where: a .< 0.625)
        return withSign(of: x, result)
    }

    // MARK: Building blocks

    /// (n + nLow) / (d + dLow), for d ≥ 1 and |dLow| ≪ d.
    ///
    /// q ≈ 1/d and v = n·q are rounded, but the fused multiply-add
    /// n − v·d gives v's error exactly, so one correction step with the
    /// low parts brings the quotient to within its final rounding.
    @inline(__always)
    static func correctedQuotient(
        _ n: Piece, _ nLow: Piece, _ d: Piece, _ dLow: Piece
    ) -> Piece {
        let q = 1 / d
        let v = n * q
        let residual = n.addingProduct(-v, d)
        return v.addingProduct((residual + nLow).addingProduct(-v, dLow), q)
    }

    /// e^y as hi + lo, |lo| ≤ ulp(hi)/2, for y in [−104, 88.5]; NaN stays
    /// NaN.
    ///
    /// y = n·ln 2 + r with |r| ≤ ln 2 / 2 (r kept as r + rLow, exact to
    /// about 2⁻⁴⁸), e^r = 1 + r + r²·Q(r), and 2ⁿ applied as two factors
    /// so that results down to the subnormals are scaled exactly before
    /// their one rounding.
    @inline(__always)
    static func exponential(_ y: Piece) -> (hi: Piece, lo: Piece) {
        // n = round(y / ln 2) by the 1.5·2²³ trick: the sum's low bits
        // hold n, as an integer and, after subtracting, as a float.
        let shifter: Float = 0x1.8p23
        let shifted = Piece(repeating: shifter).addingProduct(
            y, 0x1.715476p0)  // log2(e)
        let n = Piece(repeating: -shifter) + shifted
        let nBits =
            unsafeBitCast(shifted, to: PieceInt.self)
            &- Int32(bitPattern: shifter.bitPattern)
        // ln 2 = ln2High + ln2Low to about 2⁻⁵³ (ln2High is ln 2 rounded
        // to float). y − n·ln2High is exact in one fused operation: for
        // n ≠ 0 the two nearly cancel and the difference fits in 24 bits.
        let ln2High: Float = 0x1.62e43p-1
        let ln2Low: Float = -0x1.05c61p-29
        let rHigh = y.addingProduct(-n, ln2High)
        let r = rHigh.addingProduct(-n, ln2Low)
        let rLow = (rHigh - r).addingProduct(-n, ln2Low)
        // Q(r), fitted for e^r ≈ 1 + r + r²·Q(r).
        var q = Piece(repeating: 0x1.9dfbaap-13)
        q = horner(q, r, 0x1.6d4cbap-10)
        q = horner(q, r, 0x1.11130ep-7)
        q = horner(q, r, 0x1.5554e8p-5)
        q = horner(q, r, 0x1.555554p-3)
        q = horner(q, r, 0x1p-1)
        // e^(r + rLow) ≈ h + low: h = 1 + r rounded; low is what that sum
        // lost (exact, by Fast2Sum) plus r²·Q(r) and rLow·(1 + r).
        let h = 1 + r
        let lost = (1 - h) + r
        let low = lost + rLow.addingProduct(r, rLow).addingProduct(r * r, q)
        // Renormalise (Fast2Sum again, |h| ≥ |low|) so that the low part
        // is below half an ulp of the high part, as the divisions expect.
        let high = h + low
        let rest = (h - high) + low
        // 2ⁿ = 2^(n/2) · 2^(n − n/2), each a normal float for n ≥ −150.
        let half = nBits &>> 1
        let scale1 = power2(half)
        let scale2 = power2(nBits &- half)
        return (high * scale1 * scale2, rest * scale1 * scale2)
    }

    /// 2ⁿ for n in −126...127, by building the exponent field.
    @inline(__always)
    static func power2(_ n: PieceInt) -> Piece {
        unsafeBitCast((n &+ 127) &<< 23, to: Piece.self)
    }

    /// `c + acc · t`, one Horner step.
    @inline(__always)
    static func horner(_ acc: Piece, _ t: Piece, _ c: Float) -> Piece {
        Piece(repeating: c).addingProduct(acc, t)
    }

    /// |x|, by clearing the sign bits.
    @inline(__always)
    static func magnitude(_ x: Piece) -> Piece {
        let bits = unsafeBitCast(x, to: PieceBits.self)
        return unsafeBitCast(bits & 0x7fff_ffff, to: Piece.self)
    }

    /// |v| with the sign of x.
    @inline(__always)
    static func withSign(of x: Piece, _ v: Piece) -> Piece {
        let sign = unsafeBitCast(x, to: PieceBits.self) & 0x8000_0000
        let bits = unsafeBitCast(v, to: PieceBits.self) & 0x7fff_ffff
        return unsafeBitCast(bits | sign, to: Piece.self)
    }
}
