import Collective
import Network

/// Sums every rank's gradient, and decides which embedding rows each rank
/// updates, so that all replicas end each step with the same weights.
///
/// The weights outside the embedding (about 80 k) are all-reduced and
/// every rank updates them. The embedding's V × E table is where the
/// choice matters. A step of B rows touches at most B·T distinct ids, and
/// real headlines, short and padded, far fewer, so by default
/// (`.auto`, `.sparse`) the rows are sharded by owner, `id % size`:
///
/// 1. every rank learns every rank's touched ids (a gather of ints);
/// 2. each rank sends the gradient rows it has to their owners (one
///    all-to-all) and each owner adds its rows' parts in rank order;
/// 3. each owner applies RMSprop to its rows only;
/// 4. the updated rows are gathered by every rank (`shareUpdatedRows`).
///
/// Each row's RMSprop state thus lives, up to date, on its owner alone;
/// the update work is split instead of repeated on every rank, and each
/// rank receives at most (size − 1) / size of the table's gradient plus
/// the rows updated elsewhere. A dense all-reduce moves 2 (size − 1) /
/// size of the table, never less, so with sharding there is nothing to
/// decide per step: `.dense` is kept as the plain method (all-reduce the
/// table, every rank updates every touched row) for comparison, and
/// holds for the whole run, since the two keep the RMSprop state in
/// different places.
///
/// Every sum is formed on one rank (sharded: in rank order from zero) and
/// every other rank receives its result, so the replicas always hold
/// bit-identical weights. (`.dense` sums in the order MPI's all-reduce
/// picks, so the two modes may differ in the last bits.)
struct GradientExchange {
    /// How the embedding rows are exchanged between ranks.
    typealias Mode = ExchangeMode

    let comm: Communicator
    /// Whether each rank updates only the rows it owns.
    let sharded: Bool
    /// The weights other than the embedding, one block at the front.
    let denseBlock: Range<Int>
    let embeddingOffset: Int
    let width: Int
    let vocabulary: Int
    /// The embedding rows whose summed gradient this rank holds and
    /// updates in the current step, each once: the batch's with one rank;
    /// sharded, the touched rows this rank owns; in `.dense`, every row
    /// any rank touched.
    private(set) var rows: [Int32] = []
    /// Their summed gradients, compact [rows, E] (with one rank, the
    /// model's own compact rows are used instead). The embedding's part of
    /// `model.gradients` is written only by `.dense`, which all-reduces
    /// it; otherwise its 20 MB are never touched.
    private var summed: [Float] = [0]
    /// Whether the backward pass adds the rows into `model.gradients`:
    /// only the dense all-reduce needs the rows in the V × E table;
    /// otherwise the compact rows the backward pass leaves are summed (or,
    /// with one rank, used) as they are.
    private var scatters: Bool { comm.size > 1 && !sharded }

    // Per-step state, kept between steps so that a step allocates only
    // when it needs more room than any step before it.
    /// Ids per rank, and every rank's ids in rank order.
    private var idCounts: [Int32]
    private var allIds: [Int32] = []
    /// Touched rows per owner, and the rows themselves, owner by owner.
    private var ownedCounts: [Int32]
    private var ownedRows: [Int32] = []
    private var ownedStart: [Int]
    /// Where the next row for each rank goes.
    private var cursor: [Int]
    private var sendCounts: [Int32]
    private var receiveCounts: [Int32]
    private var sendBuffer: [Float] = []
    private var receiveBuffer: [Float] = []
    /// Per id, the pass that last saw it: a row is new to a pass when its
    /// mark is older, so nothing has to be cleared between passes.
    private var mark: [Int]
    /// Per id this rank owns and the step touched: its row in `summed`.
    private var slot: [Int32]
    private var pass = 0

    init(comm: Communicator, model: HeadlineModel, mode: Mode = .auto) {
        self.comm = comm
        sharded = comm.size > 1 && mode != .dense
        denseBlock = model.layout.denseBlock
        let embedding = model.layout["embedding/embeddings"]
        embeddingOffset = embedding.offset
        vocabulary = embedding.shape[0]
        width = embedding.shape[1]
        precondition(
            denseBlock == 0..<embeddingOffset
                && embeddingOffset + vocabulary * width == model.layout.count,
            "the embedding is expected last in the parameter layout")
        idCounts = [Int32](repeating: 0, count: comm.size)
        ownedCounts = [Int32](repeating: 0, count: comm.size)
        ownedStart = [Int](repeating: 0, count: comm.size + 1)
        cursor = [Int](repeating: 0, count: comm.size)
        sendCounts = [Int32](repeating: 0, count: comm.size)
        receiveCounts = [Int32](repeating: 0, count: comm.size)
        mark = [Int](repeating: -1, count: vocabulary)
        slot = [Int32](repeating: 0, count: vocabulary)
        model.scattersEmbeddingGradient = scatters
    }

    /// The rank that updates embedding row `id`.
    @inline(__always)
    private var owner: Owner { Owner(size: comm.size) }

    /// Zeroes the gradients the last step wrote: the dense block, and in
    /// `.dense` the table's rows it summed (cheaper than all V × E).
    mutating func clear(_ model: HeadlineModel) {
        model.gradients.withUnsafeMutableBufferPointer { g in
            let base = g.baseAddress!
            (base + denseBlock.lowerBound).update(
                repeating: 0, count: denseBlock.count)
            guard scatters else { return }
            for row in rows {
                (base + embeddingOffset + Int(row) * width).update(
                    repeating: 0, count: width)
            }
        }
        rows.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with `rows` and their summed gradients [rows, E], as
    /// `RMSprop.applySparse` takes them. Valid after `exchange` until the
    /// model's next forward pass.
    func withSummedRows<R>(
        _ model: HeadlineModel,
        _ body: (UnsafeBufferPointer<Int32>, UnsafePointer<Float>) throws -> R
    ) rethrows -> R {
        try rows.withUnsafeBufferPointer { rows in
            if comm.size == 1, let own = model.embeddingRowGradients.baseAddress
            {
                return try body(rows, own)
            }
            return try summed.withUnsafeBufferPointer {
                try body(rows, $0.baseAddress!)
            }
        }
    }

    /// Reduces the gradients of the model's last backward pass over all
    /// ranks: afterwards `model.gradients` holds the summed dense block,
    /// and `withSummedRows` the summed embedding rows listed in `rows`.
    mutating func exchange(_ model: HeadlineModel) throws {
        let local = model.touchedEmbeddingRows
        guard comm.size > 1 else {
            rows.removeAll(keepingCapacity: true)
            rows.append(contentsOf: local)
            return
        }
        try model.gradients.withUnsafeMutableBufferPointer { g in
            try comm.allreduce(
                UnsafeMutableBufferPointer(rebasing: g[denseBlock]), .sum)
        }
        try gatherIds(local)
        if sharded {
            try sendRowsToOwners(model)
        } else {
            try model.gradients.withUnsafeMutableBufferPointer { g in
                try comm.allreduce(
                    UnsafeMutableBufferPointer(
                        rebasing: g[embeddingOffset...]), .sum)
            }
            rows.removeAll(keepingCapacity: true)
            rows.append(contentsOf: ownedRows[0..<ownedStart[comm.size]])
            grow(&summed, to: rows.count * width)
            let w = width, table = embeddingOffset
            model.gradients.withUnsafeBufferPointer { g in
                summed.withUnsafeMutableBufferPointer { out in
                    for (k, id) in rows.enumerated() {
                        (out.baseAddress! + k * w).update(
                            from: g.baseAddress! + table + Int(id) * w,
                            count: w)
                    }
                }
            }
        }
    }

    /// Gives every rank the rows that the other ranks updated, so all
    /// replicas hold the same weights again. A no-op unless sharded.
    mutating func shareUpdatedRows(_ model: HeadlineModel) throws {
        guard sharded else { return }
        let me = comm.rank, w = width, table = embeddingOffset
        for k in 0..<comm.size {
            sendCounts[k] = ownedCounts[k] * Int32(w)
        }
        grow(&receiveBuffer, to: ownedStart[comm.size] * w)
        // Every rank's rows, owner by owner, in `ownedRows` order; this
        // rank's part is filled here and MPI fills the others in place.
        let rowList = ownedRows
        model.parameters.withUnsafeBufferPointer { p in
            receiveBuffer.withUnsafeMutableBufferPointer { out in
                for slot in ownedStart[me]..<ownedStart[me + 1] {
                    (out.baseAddress! + slot * w).update(
                        from: p.baseAddress! + table + Int(rowList[slot]) * w,
                        count: w)
                }
            }
        }
        try receiveBuffer.withUnsafeMutableBufferPointer { buffer in
            try sendCounts.withUnsafeBufferPointer { counts in
                try comm.allgatherVariableInPlace(buffer, counts: counts)
            }
        }
        model.parameters.withUnsafeMutableBufferPointer { p in
            receiveBuffer.withUnsafeBufferPointer { received in
                for k in 0..<comm.size where k != me {
                    for slot in ownedStart[k]..<ownedStart[k + 1] {
                        (p.baseAddress! + table + Int(rowList[slot]) * w)
                            .update(
                                from: received.baseAddress! + slot * w,
                                count: w)
                    }
                }
            }
        }
    }

    /// Restores a checkpoint's velocity. Sharded, the rows other ranks own
    /// are zeroed here: this rank never updates them, and zero rows cost
    /// nothing when a later checkpoint brings every row's decay up to date.
    func restoreVelocity(
        _ velocity: [Float], iterations: Int, into optimizer: inout RMSprop
    ) {
        var mine = velocity
        if sharded {
            mine.withUnsafeMutableBufferPointer {
                zeroRowsOthersOwn($0.baseAddress!)
            }
        }
        optimizer.restore(velocity: mine, iterations: iterations)
    }

    /// The optimizer's velocity as the dense update would have it, for a
    /// checkpoint; a collective. Sharded, each row's velocity is current
    /// only on its owner, so the owners' rows (and rank 0's dense block)
    /// are summed with zeros from everyone else, which leaves each value
    /// exactly as its owner had it.
    func checkpointVelocity(_ optimizer: RMSprop) throws -> [Float] {
        var velocity = optimizer.savedVelocity()
        guard sharded else { return velocity }
        velocity.withUnsafeMutableBufferPointer { v in
            let base = v.baseAddress!
            if comm.rank != 0 {
                base.update(repeating: 0, count: denseBlock.count)
            }
            zeroRowsOthersOwn(base)
        }
        try comm.allreduce(&velocity, .sum)
        return velocity
    }

    /// Zeroes, in a buffer in the parameter layout, the embedding rows
    /// that other ranks own.
    private func zeroRowsOthersOwn(_ buffer: UnsafeMutablePointer<Float>) {
        let owner = self.owner
        for id in 0..<Int32(vocabulary) where owner(id) != comm.rank {
            (buffer + embeddingOffset + Int(id) * width).update(
                repeating: 0, count: width)
        }
    }

    /// The index of a non-finite gradient of this step, or nil. Only the
    /// dense block and the step's embedding rows can be non-zero, so only
    /// they are scanned. Sharded, each rank sees only its own rows, so
    /// the ranks must agree on the answer (`Trainer` does).
    func firstNonFiniteGradient(_ model: HeadlineModel) -> Int? {
        let dense = model.gradients.withUnsafeBufferPointer { g in
            firstNonFinite(
                g.baseAddress! + denseBlock.lowerBound, denseBlock.count)
        }
        if let k = dense { return denseBlock.lowerBound + k }
        return withSummedRows(model) { rows, gradients in
            for (k, row) in rows.enumerated() {
                if let j = firstNonFinite(gradients + k * width, width) {
                    return embeddingOffset + Int(row) * width + j
                }
            }
            return nil
        }
    }

    /// The value of gradient `index` as `firstNonFiniteGradient` found it.
    func gradient(at index: Int, _ model: HeadlineModel) -> Float {
        guard index >= embeddingOffset else { return model.gradients[index] }
        let id = Int32((index - embeddingOffset) / width)
        return withSummedRows(model) { rows, gradients in
            guard let k = rows.firstIndex(of: id) else { return 0 }
            return gradients[k * width + (index - embeddingOffset) % width]
        }
    }

    // MARK: Steps of the exchange

    /// Gathers every rank's touched ids into `allIds`, then lists the
    /// distinct ones by owner in `ownedRows` (first appearance in rank
    /// order), with `ownedCounts` and `ownedStart`. Every rank computes
    /// the same lists.
    private mutating func gatherIds(_ local: UnsafeBufferPointer<Int32>)
        throws
    {
        var count = Int32(local.count)
        try withUnsafePointer(to: &count) { one in
            try idCounts.withUnsafeMutableBufferPointer { counts in
                try comm.allgather(
                    UnsafeBufferPointer(start: one, count: 1), into: counts)
            }
        }
        let total = idCounts.reduce(0) { $0 + Int($1) }
        grow(&allIds, to: total)
        try idCounts.withUnsafeBufferPointer { counts in
            try allIds.withUnsafeMutableBufferPointer { ids in
                try comm.allgatherVariable(local, counts: counts, into: ids)
            }
        }
        // Two passes over the ids: count the new rows per owner, then
        // place each in its owner's part.
        for k in 0..<comm.size { ownedCounts[k] = 0 }
        pass += 1
        for id in allIds[0..<total] where mark[Int(id)] != pass {
            mark[Int(id)] = pass
            ownedCounts[owner(id)] += 1
        }
        ownedStart[0] = 0
        for k in 0..<comm.size {
            ownedStart[k + 1] = ownedStart[k] + Int(ownedCounts[k])
        }
        grow(&ownedRows, to: ownedStart[comm.size])
        for k in 0..<comm.size { cursor[k] = ownedStart[k] }
        pass += 1
        for id in allIds[0..<total] where mark[Int(id)] != pass {
            mark[Int(id)] = pass
            let k = owner(id)
            ownedRows[cursor[k]] = id
            cursor[k] += 1
        }
        let me = comm.rank
        for k in ownedStart[me]..<ownedStart[me + 1] {
            slot[Int(ownedRows[k])] = Int32(k - ownedStart[me])
        }
    }

    /// Sends each gradient row to its owner and sums, on each owner, the
    /// parts of its rows in rank order into `summed`.
    private mutating func sendRowsToOwners(_ model: HeadlineModel) throws {
        let me = comm.rank, size = comm.size
        let local = model.touchedEmbeddingRows
        let compact = model.embeddingRowGradients
        // What goes where: this rank's rows grouped by owner, in its own
        // order; what comes back: each rank's ids that this rank owns.
        for k in 0..<size {
            sendCounts[k] = 0
            receiveCounts[k] = 0
        }
        for id in local where owner(id) != me {
            sendCounts[owner(id)] += Int32(width)
        }
        var start = 0
        for k in 0..<size {
            let end = start + Int(idCounts[k])
            if k != me {
                for id in allIds[start..<end] where owner(id) == me {
                    receiveCounts[k] += Int32(width)
                }
            }
            start = end
        }
        let sent = sendCounts.reduce(0) { $0 + Int($1) }
        let received = receiveCounts.reduce(0) { $0 + Int($1) }
        grow(&sendBuffer, to: sent)
        grow(&receiveBuffer, to: received)
        // Each owner's part starts after the parts of lower ranks.
        var at = 0
        for k in 0..<size {
            cursor[k] = at
            at += Int(sendCounts[k])
        }
        let owner = self.owner, w = width
        sendBuffer.withUnsafeMutableBufferPointer { send in
            cursor.withUnsafeMutableBufferPointer { cursor in
                for (slot, id) in local.enumerated() where owner(id) != me {
                    (send.baseAddress! + cursor[owner(id)]).update(
                        from: compact.baseAddress! + slot * w, count: w)
                    cursor[owner(id)] += w
                }
            }
        }
        try sendBuffer.withUnsafeBufferPointer { send in
            try sendCounts.withUnsafeBufferPointer { sendCounts in
                try receiveBuffer.withUnsafeMutableBufferPointer { receive in
                    try receiveCounts.withUnsafeBufferPointer {
                        receiveCounts in
                        try comm.alltoallVariable(
                            send, sendCounts: sendCounts, into: receive,
                            receiveCounts: receiveCounts)
                    }
                }
            }
        }
        // The sums, in rank order, from zero.
        let mine = ownedStart[me + 1] - ownedStart[me]
        grow(&summed, to: mine * w)
        summed.withUnsafeMutableBufferPointer { out in
            out.baseAddress!.update(repeating: 0, count: mine * w)
            let slots = slot
            func row(_ id: Int32) -> UnsafeMutablePointer<Float> {
                out.baseAddress! + Int(slots[Int(id)]) * w
            }
            receiveBuffer.withUnsafeBufferPointer { receive in
                var from = receive.baseAddress!
                var start = 0
                for k in 0..<size {
                    let end = start + Int(idCounts[k])
                    if k == me {
                        for (slot, id) in local.enumerated()
                        where owner(id) == me {
                            add(
                                compact.baseAddress! + slot * w,
                                into: row(id), w)
                        }
                    } else {
                        for id in allIds[start..<end] where owner(id) == me {
                            add(from, into: row(id), w)
                            from += w
                        }
                    }
                    start = end
                }
            }
        }
        rows.removeAll(keepingCapacity: true)
        rows.append(contentsOf: ownedRows[ownedStart[me]..<ownedStart[me + 1]])
    }

    /// Makes `buffer` hold at least `count` values, keeping none of them.
    private func grow<T: Numeric>(_ buffer: inout [T], to count: Int) {
        if buffer.count < count {
            buffer = [T](repeating: 0, count: max(count, buffer.count * 2))
        }
    }
}

/// Which rank owns each embedding row: `id % size`, which spreads the
/// frequent ids (small numbers, in a tokenizer's order) over all ranks.
private struct Owner {
    let size: Int
    @inline(__always)
    func callAsFunction(_ id: Int32) -> Int { Int(id) % size }
}

/// y += x over `n` floats; a plain loop, which vectorises.
@inline(__always)
private func add(
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int
) {
    for j in 0..<n { y[j] += x[j] }
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
