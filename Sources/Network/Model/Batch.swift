/// The rows of one training or prediction step, stored contiguously.
///
/// The trainer fills one `Batch` per step in place (its arrays keep their
/// capacity), so a step allocates nothing.
public struct Batch: Sendable {
    /// Rows in use.
    public private(set) var count: Int = 0
    /// T: ids per row.
    public let sequenceLength: Int
    /// A: aux features per row.
    public let auxFeatures: Int
    /// Token ids, [count, T].
    public private(set) var ids: [Int32]
    /// Aux features, [count, A].
    public private(set) var aux: [Float]
    /// Labels, [count]; zeros when the rows have none.
    public private(set) var labels: [Float]

    /// An empty batch able to hold `capacity` rows without reallocating.
    public init(capacity: Int, sequenceLength: Int, auxFeatures: Int) {
        self.sequenceLength = sequenceLength
        self.auxFeatures = auxFeatures
        ids = []
        aux = []
        labels = []
        ids.reserveCapacity(capacity * sequenceLength)
        aux.reserveCapacity(capacity * auxFeatures)
        labels.reserveCapacity(capacity)
    }

    /// Empties the batch, keeping its storage.
    public mutating func removeAll() {
        count = 0
        ids.removeAll(keepingCapacity: true)
        aux.removeAll(keepingCapacity: true)
        labels.removeAll(keepingCapacity: true)
    }

    /// Appends one row: `ids` has T elements, `aux` has A.
    public mutating func append(
        ids rowIds: UnsafeBufferPointer<Int32>,
        aux rowAux: UnsafeBufferPointer<Float>, label: Float
    ) {
        precondition(rowIds.count == sequenceLength)
        precondition(rowAux.count == auxFeatures)
        ids.append(contentsOf: rowIds)
        aux.append(contentsOf: rowAux)
        labels.append(label)
        count += 1
    }
}
