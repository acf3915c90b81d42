import Foundation

/// A small seeded generator (SplitMix64) so that the same seed gives the
/// same weights on every machine and every rank.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose whole sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Double in [0, 1) from 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A standard normal sample (Box–Muller).
    public mutating func nextNormal() -> Double {
        let u1 = 1 - nextUnit()
        let u2 = nextUnit()
        return (-2 * Foundation.log(u1)).squareRoot()
            * Foundation.cos(2 * Double.pi * u2)
    }
}

/// Keras' default initialisers for the headline model's layers.
public enum Initializers {
    /// Fills `parameters` (laid out by `layout`) as Keras initialises a
    /// fresh model: embeddings U(−0.05, 0.05); kernels Glorot-uniform;
    /// the LSTM recurrent kernel orthogonal; biases zero except the LSTM
    /// forget-gate block, which starts at 1 (`unit_forget_bias`).
    public static func kerasDefaults(
        _ parameters: inout [Float], layout: ParameterLayout, seed: UInt64
    ) {
        precondition(parameters.count == layout.count)
        var rng = SeededGenerator(seed: seed)
        for entry in layout.entries {
            let name = entry.name
            if name == "embedding/embeddings" {
                fillUniform(&parameters, entry.range, limit: 0.05, &rng)
            } else if name == "lstm/lstm_cell/recurrent_kernel" {
                let values = orthogonal(
                    rows: entry.shape[0], cols: entry.shape[1], &rng)
                for (k, value) in values.enumerated() {
                    parameters[entry.offset + k] = Float(value)
                }
            } else if name.hasSuffix("/kernel") {
                let fanIn = Double(entry.shape[0])
                let fanOut = Double(entry.shape[1])
                let limit = (6 / (fanIn + fanOut)).squareRoot()
                fillUniform(&parameters, entry.range, limit: limit, &rng)
            } else {
                for k in entry.range { parameters[k] = 0 }
                if name == "lstm/lstm_cell/bias" {
                    let units = entry.count / 4
                    for k in units..<(2 * units) {
                        parameters[entry.offset + k] = 1
                    }
                }
            }
        }
    }

    private static func fillUniform(
        _ values: inout [Float], _ range: Range<Int>, limit: Double,
        _ rng: inout SeededGenerator
    ) {
        for k in range {
            values[k] = Float((2 * rng.nextUnit() - 1) * limit)
        }
    }

    /// A [rows, cols] matrix with orthonormal rows or columns, as Keras'
    /// `Orthogonal` makes it: QR of a Gaussian matrix of the taller shape,
    /// signs fixed by R's diagonal, transposed when rows < cols.
    static func orthogonal(
        rows: Int, cols: Int, _ rng: inout SeededGenerator
    ) -> [Double] {
        let tall = max(rows, cols), wide = min(rows, cols)
        // Gaussian [tall, wide], column-major so each column is contiguous.
        var q = (0..<(tall * wide)).map { _ in rng.nextNormal() }
        // Modified Gram–Schmidt in Double; R's diagonal is the norm, which
        // is positive, so the sign fix of Keras' QR is already applied.
        for j in 0..<wide {
            for p in 0..<j {
                var proj = 0.0
                for r in 0..<tall { proj += q[p * tall + r] * q[j * tall + r] }
                for r in 0..<tall { q[j * tall + r] -= proj * q[p * tall + r] }
            }
            var norm = 0.0
            for r in 0..<tall { norm += q[j * tall + r] * q[j * tall + r] }
            norm = norm.squareRoot()
            for r in 0..<tall { q[j * tall + r] /= norm }
        }
        // q[j * tall + r] is element (r, j) of the [tall, wide] matrix.
        var out = [Double](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                out[r * cols + c] =
                    rows >= cols
                    ? q[c * tall + r] : q[r * tall + c]
            }
        }
        return out
    }
}
