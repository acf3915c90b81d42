import Foundation

/// The scalar functions of the two output heads: sigmoid of a logit and
/// the loss. (The LSTM's gates use the vector versions in
/// `VectorActivations`.)
public enum Activations {
    /// The logistic function 1 / (1 + e^−x).
    @inline(__always)
    public static func sigmoid(_ x: Float) -> Float {
        1 / (1 + Foundation.exp(-x))
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
