/// RMSprop with Keras 3's formula and defaults: no momentum, not centred,
/// epsilon inside the square root, no bias correction.
///
///     v ← ρ·v + (1 − ρ)·g²
///     w ← w − lr·g / √(v + ε)
///
/// Every weight, the embedding included, gets this textbook update on its
/// summed gradient. (Keras' TensorFlow backend squares each occurrence of
/// an embedding row separately before summing; see the README.)
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
    /// One velocity per parameter, in the parameter layout.
    public var velocity: [Float]
    /// Updates applied so far.
    public var iterations: Int = 0

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

    /// Applies one update to `parameters` from `gradients`.
    public mutating func apply(
        to parameters: inout [Float], gradients: [Float]
    ) {
        precondition(parameters.count == velocity.count)
        precondition(gradients.count == velocity.count)
        // The operations and their order mirror Keras' update step in float32,
        // without fused multiply-adds, so each rounding matches.
        let rho = Float(self.rho), decay = Float(1 - self.rho)
        let lr = Float(learningRate), eps = Float(epsilon)
        velocity.withUnsafeMutableBufferPointer { v in
            parameters.withUnsafeMutableBufferPointer { w in
                gradients.withUnsafeBufferPointer { g in
                    for k in 0..<v.count {
                        let gk = g[k]
                        let vk = rho * v[k] + decay * (gk * gk)
                        v[k] = vk
                        w[k] = w[k] - (lr * gk) / (vk + eps).squareRoot()
                    }
                }
            }
        }
        iterations += 1
    }

    /// The velocity of every parameter as the textbook update has it after
    /// `iterations` steps, for a checkpoint.
    public func savedVelocity() -> [Float] { velocity }

    /// Restores the state that `savedVelocity()` and `iterations` gave.
    public mutating func restore(velocity saved: [Float], iterations: Int) {
        precondition(saved.count == velocity.count)
        velocity = saved
        self.iterations = iterations
    }
}
