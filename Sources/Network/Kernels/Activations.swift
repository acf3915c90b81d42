import Foundation

/// Elementwise activations and their derivatives, as used by the layers.
///
/// Derivatives are written in terms of the activation's output, which is
/// what the forward pass keeps: σ' = σ(1 − σ), tanh' = 1 − tanh².
public enum Activations {
    /// The logistic function 1 / (1 + e^−x).
    @inline(__always)
    public static func sigmoid(_ x: Float) -> Float {
        1 / (1 + Foundation.exp(-x))
    }

    /// The hyperbolic tangent.
    @inline(__always)
    public static func tanh(_ x: Float) -> Float {
        Foundation.tanh(x)
    }

    /// Binary cross-entropy of label `y` given the logit `z`, in the
    /// overflow-free form Keras uses for sigmoid outputs:
    /// max(z, 0) − z·y + log(1 + e^−|z|). No probability clipping.
    @inline(__always)
    public static func binaryCrossEntropy(logit z: Float, label y: Float)
        -> Float
    {
        max(z, 0) - z * y + Foundation.log1p(Foundation.exp(-Swift.abs(z)))
    }
}
