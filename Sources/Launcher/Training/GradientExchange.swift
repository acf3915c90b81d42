import Collective
import Network

/// Sums every rank's gradient into every rank's buffer, sending the
/// embedding rows that have a gradient rather than the whole V × E table
/// when that is cheaper, and keeps the buffer zero between steps.
///
/// A step of B rows touches at most B·T distinct ids, and real headlines,
/// short and padded, touch far fewer: exchanging only those rows (ids and
/// values, gathered from every rank) costs a fraction of a dense
/// all-reduce of 5 M floats. Every rank adds the gathered rows in rank
/// order, so all replicas get bit-identical sums. The choice is made per
/// step from the row counts, which every rank knows, so all ranks choose
/// alike.
struct GradientExchange {
    /// How the embedding rows are exchanged between ranks.
    typealias Mode = ExchangeMode

    let comm: Communicator
    let mode: Mode
    /// The weights other than the embedding, one block at the front.
    let denseBlock: Range<Int>
    let embeddingOffset: Int
    let width: Int
    let vocabulary: Int
    /// Embedding rows with a gradient in the current step, each once.
    private(set) var rows: [Int32] = []
    private var seen: [Bool]
    private var sendRows: [Float] = []

    init(comm: Communicator, model: HeadlineModel, mode: Mode = .auto) {
        self.comm = comm
        self.mode = mode
        denseBlock = model.layout.denseBlock
        let embedding = model.layout["embedding/embeddings"]
        embeddingOffset = embedding.offset
        vocabulary = embedding.shape[0]
        width = embedding.shape[1]
        seen = [Bool](repeating: false, count: vocabulary)
    }

    /// Zeroes the gradients the last step wrote: the dense block and the
    /// embedding rows it touched. Cheaper than clearing all V × E floats.
    mutating func clear(_ model: HeadlineModel) {
        model.gradients.withUnsafeMutableBufferPointer { g in
            let base = g.baseAddress!
            (base + denseBlock.lowerBound).update(
                repeating: 0, count: denseBlock.count)
            for row in rows {
                (base + embeddingOffset + Int(row) * width).update(
                    repeating: 0, count: width)
            }
        }
        rows.removeAll(keepingCapacity: true)
    }

    /// Reduces the gradients of the model's last backward pass over all
    /// ranks and records the embedding rows that now have a gradient.
    /// Returns whether the sparse row exchange was used.
    @discardableResult
    mutating func exchange(_ model: HeadlineModel) throws -> Bool {
        let local = Array(model.touchedEmbeddingRows)
        guard comm.size > 1 else {
            rows = local
            return true
        }
        try model.gradients.withUnsafeMutableBufferPointer { g in
            try comm.allreduce(
                UnsafeMutableBufferPointer(
                    rebasing: g[denseBlock]), .sum)
        }
        // Every rank learns every rank's ids (and so the row counts).
        let ids = try comm.allgatherVariable(local)
        // A dense ring all-reduce moves about 2·V·E floats per rank; the
        // gathered rows, ids.count·E. Only the counts decide, and every
        // rank has the same counts.
        let sparse =
            mode == .sparse
            || (mode == .auto && ids.count < vocabulary)
        if sparse {
            sendRows.removeAll(keepingCapacity: true)
            model.gradients.withUnsafeMutableBufferPointer { g in
                for id in local {
                    let start = embeddingOffset + Int(id) * width
                    sendRows.append(contentsOf: g[start..<(start + width)])
                    // Own rows are added back below, in rank order.
                    (g.baseAddress! + start).update(repeating: 0, count: width)
                }
            }
            let values = try comm.allgatherVariable(sendRows)
            model.gradients.withUnsafeMutableBufferPointer { g in
                let base = g.baseAddress! + embeddingOffset
                values.withUnsafeBufferPointer { v in
                    for (k, id) in ids.enumerated() {
                        let row = base + Int(id) * width
                        let src = v.baseAddress! + k * width
                        for j in 0..<width { row[j] += src[j] }
                    }
                }
            }
        } else {
            try model.gradients.withUnsafeMutableBufferPointer { g in
                try comm.allreduce(
                    UnsafeMutableBufferPointer(
                        rebasing: g[embeddingOffset...]), .sum)
            }
        }
        rows.removeAll(keepingCapacity: true)
        for id in ids where !seen[Int(id)] {
            seen[Int(id)] = true
            rows.append(id)
        }
        for id in rows { seen[Int(id)] = false }
        return sparse
    }

    /// The index of a non-finite gradient of this step, or nil. Only the
    /// dense block and the step's embedding rows can be non-zero, so only
    /// they are scanned; checked after the exchange, so every rank reaches
    /// the same answer.
    func firstNonFiniteGradient(_ model: HeadlineModel) -> Int? {
        model.gradients.withUnsafeBufferPointer { g in
            let base = g.baseAddress!
            if let k = firstNonFinite(
                base + denseBlock.lowerBound, denseBlock.count)
            {
                return denseBlock.lowerBound + k
            }
            for row in rows {
                let start = embeddingOffset + Int(row) * width
                if let k = firstNonFinite(base + start, width) {
                    return start + k
                }
            }
            return nil
        }
    }
}

/// The index of the first NaN or infinity among `n` floats, or nil.
///
/// x · 0 is 0 for every finite x and NaN otherwise, and a NaN survives any
/// sum, so a vector sum of x · 0 tells whether to look closer; the scalar
/// search runs only when it says so.
func firstNonFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Int? {
    var lanes = SIMD16<Float>()
    var k = 0
    while k + 16 <= n {
        lanes +=
            UnsafeRawPointer(x + k).loadUnaligned(as: SIMD16<Float>.self)
            * 0
        k += 16
    }
    var tail: Float = 0
    while k < n {
        tail += x[k] * 0
        k += 1
    }
    guard lanes.sum().isNaN || tail.isNaN else { return nil }
    return (0..<n).first { !x[$0].isFinite }
}
