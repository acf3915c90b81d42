// Shared by the npy and safetensors harnesses.
import Network

/// Whether two arrays have the same shape, element type and element bit
/// patterns (so NaN equals the same NaN and -0.0 differs from 0.0, unlike
/// `HostArray ==`).
func sameBits(_ a: HostArray, _ b: HostArray) -> Bool {
    guard a.shape == b.shape else { return false }
    switch (a.storage, b.storage) {
    case (.float32(let x), .float32(let y)):
        return x.map(\.bitPattern) == y.map(\.bitPattern)
    case (.float64(let x), .float64(let y)):
        return x.map(\.bitPattern) == y.map(\.bitPattern)
    case (.int32(let x), .int32(let y)):
        return x == y
    case (.int64(let x), .int64(let y)):
        return x == y
    default:
        return false
    }
}

/// A short description for failure messages.
func describe(_ a: HostArray) -> String {
    "\(a.elementType) \(a.shape) (\(a.count) elements)"
}
