import Foundation
import XCTest

@testable import Network

/// The vector sigmoid and tanh against Double references.
///
/// The error is measured in ulps of the float binade that holds the exact
/// value (2⁻¹⁴⁹ for subnormal results), and must stay within 1 ulp (the
/// implementation's own bound is a little above ½ ulp; a full sweep of all
/// 2³² inputs with `kernel-bench --activation-sweep 1` gives its maximum).
/// The inputs are a dense sweep over all float bit patterns, every float
/// in windows around each branch point and saturation threshold, and the
/// special values.
final class VectorActivationTests: XCTestCase {
    static let tolerance = 1.0

    static func sigmoidReference(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
    static func tanhReference(_ x: Double) -> Double { Foundation.tanh(x) }

    /// The error of `got` in ulps of the binade of `exact`.
    static func ulps(_ got: Float, _ exact: Double) -> Double {
        if exact.isNaN || got.isNaN {
            return exact.isNaN && got.isNaN ? 0 : .infinity
        }
        let binade = exact == 0 ? -126 : max(Int(exact.exponent), -126)
        let ulp = Double(sign: .plus, exponent: binade - 23, significand: 1)
        return abs(Double(got) - exact) / ulp
    }

    /// Checks `f` on `inputs`; returns the worst error and where it was.
    static func worst(
        _ inputs: [Float],
        _ f: (SIMD16<Float>) -> SIMD16<Float>,
        _ reference: (Double) -> Double
    ) -> (ulps: Double, at: Float) {
        var result = (ulps: 0.0, at: Float(0))
        var start = 0
        while start < inputs.count {
            var x = SIMD16<Float>()
            let lanes = min(16, inputs.count - start)
            for l in 0..<lanes { x[l] = inputs[start + l] }
            let y = f(x)
            for l in 0..<lanes {
                let e = ulps(y[l], reference(Double(x[l])))
                if e > result.ulps { result = (e, x[l]) }
            }
            start += 16
        }
        return result
    }

    /// Every `stride`-th float bit pattern, both signs, NaNs and infinities
    /// included.
    static func sweep(stride: UInt64) -> [Float] {
        Swift.stride(from: UInt64(0), to: 1 << 32, by: Int(stride)).map {
            Float(bitPattern: UInt32($0))
        }
    }

    /// Every float from `center` outwards, `count` steps each way, both
    /// signs.
    static func window(around center: Float, count: Int) -> [Float] {
        var values: [Float] = []
        var up = center, down = center
        for _ in 0..<count {
            values += [up, -up, down, -down]
            up = up.nextUp
            down = down.nextDown
        }
        return values
    }

    static let specials: [Float] = [
        0, -0.0, .infinity, -.infinity, .nan, .greatestFiniteMagnitude,
        -.greatestFiniteMagnitude, .leastNonzeroMagnitude,
        -.leastNonzeroMagnitude, .leastNormalMagnitude,
        -.leastNormalMagnitude, 1, -1, 0.5, -0.5,
    ]

    func check(
        _ name: String, _ inputs: [Float],
        _ f: (SIMD16<Float>) -> SIMD16<Float>,
        _ reference: (Double) -> Double
    ) {
        let w = Self.worst(inputs, f, reference)
        XCTAssertLessThanOrEqual(
            w.ulps, Self.tolerance,
            "\(name): \(w.ulps) ulp at \(w.at) (bits 0x"
                + String(w.at.bitPattern, radix: 16) + ")")
    }

    func testSigmoidDenseSweep() {
        check(
            "sigmoid", Self.sweep(stride: 4099), VectorActivations.sigmoid,
            Self.sigmoidReference)
    }

    func testTanhDenseSweep() {
        check(
            "tanh", Self.sweep(stride: 4099), VectorActivations.tanh,
            Self.tanhReference)
    }

    /// Around the exponential's reduction boundaries (|y| = ½ ln 2 and
    /// ³⁄₂ ln 2), where sigmoid saturates to 1 (x ≈ 16.6), where its result
    /// turns subnormal (−87.3) and then zero (−103.97), and near zero.
    func testSigmoidWindows() {
        var inputs = Self.specials
        for center: Float in [
            0.34657359, 1.03972077, 16.6355324, 17, 87.3365479, 88.7228394,
            103.972077, 104, 1e-3, 1e-8, 2, 8,
        ] {
            inputs += Self.window(around: center, count: 3000)
        }
        check(
            "sigmoid", inputs, VectorActivations.sigmoid,
            Self.sigmoidReference)
    }

    /// Around the switch from the polynomial to the exponential form
    /// (0.625), the exponential's reduction boundaries above it
    /// (2|x| = ⁵⁄₂ ln 2, ⁷⁄₂ ln 2), the saturation to 1 (≈ 9.01), the cap
    /// at 10, and the range where tanh(x) rounds to x (|x| < 2⁻¹²).
    func testTanhWindows() {
        var inputs = Self.specials
        for center: Float in [
            0.625, 0.86643398, 1.21300757, 9.0109133, 10, 0x1p-12, 0x1p-11,
            1e-30, 0.1, 1, 3,
        ] {
            inputs += Self.window(around: center, count: 3000)
        }
        check("tanh", inputs, VectorActivations.tanh, Self.tanhReference)
    }

    func testSpecialValues() {
        // −0.0, not −0: the integer literal would give +0.
        let x = SIMD16<Float>(
            0, -0.0, .infinity, -.infinity, .nan, 200, -200, 0x1p-128,
            -0x1p-128,
            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1, -1,
            30, -30, -95)
        let s = VectorActivations.sigmoid(x)
        let t = VectorActivations.tanh(x)
        XCTAssertEqual(s[0], 0.5)
        XCTAssertEqual(s[1], 0.5)
        XCTAssertEqual(s[2], 1)
        XCTAssertEqual(s[3], 0)
        XCTAssertTrue(s[4].isNaN)
        XCTAssertEqual(s[5], 1)
        XCTAssertEqual(s[6], 0)
        XCTAssertEqual(s[9], 1)
        XCTAssertEqual(s[10], 0)
        XCTAssertEqual(s[13], 1)
        // σ(−95) = e^−95 ≈ 5.5e−42, a subnormal, not zero.
        XCTAssertEqual(Double(s[15]), exp(-95.0), accuracy: 1.5e-45)
        XCTAssertGreaterThan(s[15], 0)
        XCTAssertEqual(t[0], 0)
        XCTAssertEqual(t[1].sign, .minus, "tanh(−0) is −0")
        XCTAssertEqual(t[2], 1)
        XCTAssertEqual(t[3], -1)
        XCTAssertTrue(t[4].isNaN)
        XCTAssertEqual(t[5], 1)
        XCTAssertEqual(t[6], -1)
        XCTAssertEqual(t[7], 0x1p-128, "tanh(x) = x for subnormal x")
        XCTAssertEqual(t[8], -0x1p-128)
        XCTAssertEqual(t[9], 1)
        XCTAssertEqual(t[10], -1)
        XCTAssertEqual(t[14], -1)
    }

    /// tanh is odd to the bit: the sign is applied last.
    func testTanhIsExactlyOdd() {
        let inputs = Self.sweep(stride: 65537)
        var start = 0
        while start + 16 <= inputs.count {
            // Negated lane by lane: SIMD's prefix minus is 0 − x, which
            // turns +0 into +0.
            var x = SIMD16<Float>(), negated = SIMD16<Float>()
            for l in 0..<16 {
                x[l] = inputs[start + l]
                negated[l] = -inputs[start + l]
            }
            let plus = VectorActivations.tanh(x)
            let minus = VectorActivations.tanh(negated)
            for l in 0..<16 where !x[l].isNaN {
                XCTAssertEqual(
                    plus[l].bitPattern, (-minus[l]).bitPattern,
                    "tanh(\(x[l]))")
            }
            start += 16
        }
    }
}
