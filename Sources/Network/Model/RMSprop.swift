#if arch(x86_64)
    import _Builtin_intrinsics.intel
#endif

/// RMSprop with Keras 3's formula and defaults: no momentum, not centred,
/// epsilon inside the square root, no bias correction.
///
///     v ← ρ·v + (1 − ρ)·g²
///     w ← w − lr·g / √(v + ε)
///
/// Every weight, the embedding included, gets this textbook update on its
/// summed gradient. (Keras' TensorFlow backend squares each occurrence of
/// an embedding row separately before summing; see the README.)
///
/// `applySparse` updates only the rows of one block (the embedding) that
/// have a gradient. For the others the textbook step leaves w unchanged
/// (its increment is exactly 0) and multiplies v by ρ; those
/// multiplications are kept pending per row and done, one by one in float32
/// as the dense step would do them, when the row is next touched or the
/// state is read. The result is bit-identical to the dense update.
public struct RMSprop: Sendable {
    // The hyper-parameters are kept in Double, as Keras keeps them in
    // Python floats: 1 − ρ is formed in Double and only then rounded to
    // float32 (0.1f, where 1 − 0.9f would give 0.100000024).

    /// Step size; Keras' default 0.001.
    public var learningRate: Double
    /// Decay of the squared-gradient average; default 0.9.
    public var rho: Double
    /// Added inside the square root; default 1e-7.
    public var epsilon: Double
    /// One velocity per parameter, in the parameter layout. Rows of a
    /// sparse block may lag behind (see `savedVelocity()`).
    public private(set) var velocity: [Float]
    /// Updates applied so far.
    public private(set) var iterations: Int = 0

    /// The sparse block, once `applySparse` has been used.
    private var block: SparseBlock?

    private struct SparseBlock: Sendable {
        var offset: Int
        var width: Int
        /// Per row: the number of steps whose decay its velocity holds.
        var current: [Int]
    }

    /// An optimizer for `count` parameters with zero velocity.
    public init(
        count: Int, learningRate: Double = 0.001, rho: Double = 0.9,
        epsilon: Double = 1e-7
    ) {
        self.learningRate = learningRate
        self.rho = rho
        self.epsilon = epsilon
        velocity = [Float](repeating: 0, count: count)
    }

    /// Applies one update to every parameter from `gradients`.
    public mutating func apply(
        to parameters: inout [Float], gradients: [Float]
    ) {
        precondition(parameters.count == velocity.count)
        precondition(gradients.count == velocity.count)
        catchUp()
        update(&parameters, gradients, range: 0..<velocity.count)
        iterations += 1
    }

    /// Applies one update in which the rows of the block
    /// `[offset, offset + rowCount·width)` have a gradient only where
    /// listed in `rows` (each row at most once); every parameter outside
    /// the block is updated densely from `gradients`.
    ///
    /// The listed rows' gradients come compact, `rowGradients` [rows, width]
    /// (row k for `rows[k]`), as an embedding's backward pass makes them;
    /// the block's part of `gradients` is not read, so it need never be
    /// written (nor take memory).
    public mutating func applySparse(
        to parameters: inout [Float], gradients: [Float],
        blockOffset offset: Int, rowWidth width: Int, rowCount: Int,
        rows: UnsafeBufferPointer<Int32>, rowGradients: UnsafePointer<Float>
    ) {
        applySparse(
            to: &parameters, gradients: gradients, blockOffset: offset,
            rowWidth: width, rowCount: rowCount, rows: rows,
            rowGradient: { rowGradients + $0 * width })
    }

    /// `applySparse` with each listed row's gradient wherever it lies:
    /// `rowGradient(k)` is the start of `rows[k]`'s `width` values (say,
    /// in another process's memory, or summed from several). Where
    /// `rowCopy(k)` is not nil, the row's updated weights are also stored
    /// there, in the same pass (for a caller that sends them on).
    public mutating func applySparse(
        to parameters: inout [Float], gradients: [Float],
        blockOffset offset: Int, rowWidth width: Int, rowCount: Int,
        rows: UnsafeBufferPointer<Int32>,
        rowGradient: (Int) -> UnsafePointer<Float>,
        rowCopy: (Int) -> UnsafeMutablePointer<Float>? = { _ in nil }
    ) {
        precondition(parameters.count == velocity.count)
        precondition(gradients.count == velocity.count)
        precondition(offset + rowCount * width <= velocity.count)
        if block == nil || block!.offset != offset || block!.width != width
            || block!.current.count != rowCount
        {
            catchUp()
            block = SparseBlock(
                offset: offset, width: width,
                current: [Int](repeating: iterations, count: rowCount))
        }
        let end = offset + rowCount * width
        update(&parameters, gradients, range: 0..<offset)
        update(&parameters, gradients, range: end..<velocity.count)
        let step = iterations
        let rho = Float(self.rho), decay = Float(1 - self.rho)
        let lr = Float(learningRate), eps = Float(epsilon)
        var current = block!.current
        block = nil  // Holds no second reference to `current` meanwhile.
        velocity.withUnsafeMutableBufferPointer { vBuffer in
            parameters.withUnsafeMutableBufferPointer { wBuffer in
                for (k, row) in rows.enumerated() {
                    let r = Int(row)
                    let start = offset + r * width
                    let v = vBuffer.baseAddress! + start
                    RMSprop.decay(v, width, rho: rho, times: step - current[r])
                    RMSprop.update(
                        v, wBuffer.baseAddress! + start, rowGradient(k),
                        width, rho: rho, decay: decay, lr: lr, eps: eps,
                        copy: rowCopy(k))
                    current[r] = step + 1
                }
            }
        }
        block = SparseBlock(offset: offset, width: width, current: current)
        iterations += 1
    }

    /// The velocity of every parameter as the dense update would have it
    /// after `iterations` steps, for a checkpoint.
    public func savedVelocity() -> [Float] {
        var copy = self
        copy.catchUp()
        return copy.velocity
    }

    /// Restores the state that `savedVelocity()` and `iterations` gave.
    public mutating func restore(velocity saved: [Float], iterations: Int) {
        precondition(saved.count == velocity.count)
        velocity = saved
        self.iterations = iterations
        block = nil
    }

    /// Brings every lagging row of the sparse block up to date.
    private mutating func catchUp() {
        guard let current = block?.current, let width = block?.width,
            let offset = block?.offset
        else { return }
        for r in 0..<current.count where current[r] < iterations {
            let start = offset + r * width
            decay(start..<(start + width), times: iterations - current[r])
            block!.current[r] = iterations
        }
    }

    /// v ← ρ·v, `times` times, each product rounded as the dense step
    /// rounds it (ρ·v + (1 − ρ)·0 is exactly ρ·v). Every 16 rounds it
    /// checks whether the values have decayed to all zeros, which they
    /// then stay, and stops there.
    private mutating func decay(_ range: Range<Int>, times: Int) {
        let rho = Float(self.rho)
        velocity.withUnsafeMutableBufferPointer { buffer in
            RMSprop.decay(
                buffer.baseAddress! + range.lowerBound, range.count, rho: rho,
                times: times)
        }
    }

    private static func decay(
        _ v: UnsafeMutablePointer<Float>, _ n: Int, rho: Float, times: Int
    ) {
        guard times > 0 else { return }
        // Eight vector registers at a time (64 values with AVX2, 128 with
        // AVX-512): eight independent chains of products, which the
        // processor overlaps (a single chain would wait out each product's
        // latency, a pass over the whole row per round would load and
        // store it every time), and no more than the registers hold (16
        // 256-bit halves of 16-lane vectors spilled to the stack).
        let block = 8 * Lanes.Register.scalarCount
        var j = 0
        while j + block <= n {
            decayBlock(v + j, rho: rho, times: times)
            j += block
        }
        var done = 0
        while j < n, done < times {
            let rounds = min(16, times - done)
            for _ in 0..<rounds {
                // A plain loop over the rest of the row: it vectorises.
                for k in j..<n { v[k] = rho * v[k] }
            }
            done += rounds
            var any = false
            for k in j..<n where v[k] != 0 {
                any = true
                break
            }
            if !any { break }
        }
    }

    /// `decay` of the `8 · Lanes.Register.scalarCount` values at `p`.
    @inline(__always)
    private static func decayBlock(
        _ p: UnsafeMutablePointer<Float>, rho: Float, times: Int
    ) {
        typealias Register = Lanes.Register
        let width = Register.scalarCount
        func load(_ i: Int) -> Register {
            UnsafeRawPointer(p + width * i).loadUnaligned(as: Register.self)
        }
        var a0 = load(0), a1 = load(1), a2 = load(2), a3 = load(3)
        var a4 = load(4), a5 = load(5), a6 = load(6), a7 = load(7)
        var done = 0
        while done < times {
            let rounds = min(16, times - done)
            for _ in 0..<rounds {
                a0 = rho * a0
                a1 = rho * a1
                a2 = rho * a2
                a3 = rho * a3
                a4 = rho * a4
                a5 = rho * a5
                a6 = rho * a6
                a7 = rho * a7
            }
            done += rounds
            let z = Register()
            if a0 == z, a1 == z, a2 == z, a3 == z, a4 == z, a5 == z, a6 == z,
                a7 == z
            {
                break
            }
        }
        func store(_ a: Register, _ i: Int) {
            UnsafeMutableRawPointer(p + width * i).storeBytes(
                of: a, as: Register.self)
        }
        store(a0, 0)
        store(a1, 1)
        store(a2, 2)
        store(a3, 3)
        store(a4, 4)
        store(a5, 5)
        store(a6, 6)
        store(a7, 7)
    }

    private mutating func update(
        _ parameters: inout [Float], _ gradients: [Float], range: Range<Int>
    ) {
        let rho = Float(self.rho), decay = Float(1 - self.rho)
        let lr = Float(learningRate), eps = Float(epsilon)
        velocity.withUnsafeMutableBufferPointer { v in
            parameters.withUnsafeMutableBufferPointer { w in
                gradients.withUnsafeBufferPointer { g in
                    RMSprop.update(
                        v.baseAddress! + range.lowerBound,
                        w.baseAddress! + range.lowerBound,
                        g.baseAddress! + range.lowerBound, range.count,
                        rho: rho, decay: decay, lr: lr, eps: eps)
                }
            }
        }
    }

    @inline(__always)
    private static func four(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
    }

    @inline(__always)
    private static func four(
        _ x: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>
    ) {
        UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD4<Float>.self)
    }

    /// The update of `n` consecutive parameters, with the new weights also
    /// stored at `copy` when given. The operations and their order mirror
    /// Keras' update step in float32, without fused multiply-adds, so each
    /// rounding matches. (It runs at memory speed: three loads and two
    /// stores per parameter.)
    @inline(__always)
    private static func update(
        _ v: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>,
        _ g: UnsafePointer<Float>, _ n: Int, rho: Float, decay: Float,
        lr: Float, eps: Float, copy: UnsafeMutablePointer<Float>? = nil
    ) {
        // Vectors written out: the scalar loop does not vectorise (see
        // `Lanes.squareRoot`). Each lane does the same operations as the
        // scalar formula, and IEEE square root and division round the same
        // in a vector, so the bits are the same.
        var k = 0
        #if arch(x86_64)
            // Four lanes at a time, as SSE's sqrtps takes them. The square
            // roots and divisions bound this loop, and wider vectors cost
            // as many of their cycles per lane, plus the shuffles that
            // split and join them (about 10% slower on uniform ids, in
            // kernel-bench's optimizer line).
            while k + 4 <= n {
                let gk = four(g + k)
                let vk = rho * four(v + k) + decay * (gk * gk)
                four(vk, v + k)
                let step = (lr * gk) / _mm_sqrt_ps(vk + eps)
                let wk = four(w + k) - step
                four(wk, w + k)
                if let copy { four(wk, copy + k) }
                k += 4
            }
        #endif
        Lanes.forEach(n - k) { j, lanes in
            let k = k + j
            let gk = Lanes.load(g + k, lanes)
            let vk = rho * Lanes.load(v + k, lanes) + decay * (gk * gk)
            Lanes.store(vk, v + k, lanes)
            let step = (lr * gk) / Lanes.squareRoot(vk + eps)
            let wk = Lanes.load(w + k, lanes) - step
            Lanes.store(wk, w + k, lanes)
            if let copy { Lanes.store(wk, copy + k, lanes) }
        }
    }
}
