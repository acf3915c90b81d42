/// The element types that the tensor file formats read and write.
///
/// The trainer only needs 32- and 64-bit floats and integers, so the
/// readers refuse every other type instead of guessing a conversion.
public enum ElementType: String, Sendable, CaseIterable {
    case float32, float64, int32, int64

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        }
    }
}

/// A dense row-major array as stored in a file.
///
/// The last index varies fastest. An empty `shape` is a scalar with one
/// element; a shape with a zero dimension holds no elements.
public struct HostArray: Equatable, Sendable {
    /// The elements, typed as they are in the file.
    public enum Storage: Equatable, Sendable {
        case float32([Float])
        case float64([Double])
        case int32([Int32])
        case int64([Int64])
    }

    /// The size of each dimension, outermost first.
    public var shape: [Int]
    /// The elements in row-major order.
    public var storage: Storage

    /// Makes an array; `storage` must hold exactly the product of
    /// `shape` elements.
    public init(shape: [Int], storage: Storage) {
        let expected = elementCount(of: shape)
        precondition(
            expected != nil,
            "HostArray: shape \(shape) has a negative dimension or "
                + "its element count overflows Int")
        precondition(
            expected == storage.count,
            "HostArray: shape \(shape) needs \(expected ?? -1) elements, "
                + "storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    /// Makes a float32 array.
    public init(shape: [Int], floats: [Float]) {
        self.init(shape: shape, storage: .float32(floats))
    }

    /// Makes an int32 array.
    public init(shape: [Int], int32s: [Int32]) {
        self.init(shape: shape, storage: .int32(int32s))
    }

    /// The type of the stored elements.
    public var elementType: ElementType { storage.elementType }

    /// The number of elements (1 for a scalar).
    public var count: Int { storage.count }

    /// The elements converted to `Float` (rounding wide values).
    public func floats() -> [Float] {
        switch storage {
        case .float32(let v): return v
        case .float64(let v): return v.map { Float($0) }
        case .int32(let v): return v.map { Float($0) }
        case .int64(let v): return v.map { Float($0) }
        }
    }

    /// The elements converted to `Double` (int64 beyond 2^53 rounds).
    public func doubles() -> [Double] {
        switch storage {
        case .float32(let v): return v.map { Double($0) }
        case .float64(let v): return v
        case .int32(let v): return v.map { Double($0) }
        case .int64(let v): return v.map { Double($0) }
        }
    }

    /// The elements as `Int64` for integer storage; `nil` for floating
    /// storage, because truncating floats silently would hide a mix-up
    /// of files.
    public func integers() -> [Int64]? {
        switch storage {
        case .int32(let v): return v.map { Int64($0) }
        case .int64(let v): return v
        case .float32, .float64: return nil
        }
    }
}

extension HostArray.Storage {
    /// The type of the stored elements.
    public var elementType: ElementType {
        switch self {
        case .float32: return .float32
        case .float64: return .float64
        case .int32: return .int32
        case .int64: return .int64
        }
    }

    /// The number of stored elements.
    public var count: Int {
        switch self {
        case .float32(let v): return v.count
        case .float64(let v): return v.count
        case .int32(let v): return v.count
        case .int64(let v): return v.count
        }
    }
}

/// An error about one file: names the file and says what was expected.
public struct FileFormatError: Error, CustomStringConvertible, Equatable {
    /// The path (or label, for in-memory bytes) of the offending file.
    public let file: String
    /// What was wrong and what was expected instead.
    public let message: String

    /// Makes an error about `file`.
    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    /// `file: message`, ready to print.
    public var description: String { "\(file): \(message)" }
}

/// The number of elements of `shape`, or nil when a dimension is negative
/// or the product overflows `Int`.
///
/// Overflow among the non-zero dimensions is refused even when another
/// dimension is zero: code that later computes strides from the shape
/// would overflow on it.
func elementCount(of shape: [Int]) -> Int? {
    var product = 1
    var sawZero = false
    for dim in shape {
        if dim < 0 { return nil }
        if dim == 0 {
            sawZero = true
            continue
        }
        let (next, overflow) = product.multipliedReportingOverflow(by: dim)
        if overflow { return nil }
        product = next
    }
    return sawZero ? 0 : product
}
