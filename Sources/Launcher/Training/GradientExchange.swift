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
/// When every rank runs on one machine, the sharded exchange goes through
/// memory they all map instead of messages (`SharedSegments`): each rank
/// lays out its step sums, dense gradients, ids and compact rows (which
/// the backward pass writes there) in its segment, and after one barrier
/// every rank reads what it needs where it lies: the whole step costs two
/// barriers (this one and the one after the update) and no copy of a
/// gradient row. Between machines, or with `HEADLINE_SHARED_MEMORY=0`,
/// the steps above go through MPI.
///
/// Every sum is formed on one rank in rank order (the embedding rows on
/// their owner; with shared memory the step sums and dense gradients on
/// every rank alike) and every other rank receives its result or forms
/// the same, so the replicas always hold bit-identical weights. (Through
/// messages the dense block is summed in the order MPI's all-reduce
/// picks, and `.dense` does so for the table too, so those may differ in
/// the last bits from the shared path on three or more ranks; on two,
/// every way gives the same bits.)
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
    /// The width of the LSTM's input projection, 4U: a row of the
    /// projection gradient that the embedding rows are computed from.
    let projectionWidth: Int
    let vocabulary: Int
    /// The embedding rows whose summed gradient this rank holds and
    /// updates in the current step, each once: the batch's with one rank;
    /// sharded, the touched rows this rank owns; in `.dense`, every row
    /// any rank touched.
    private(set) var rows: [Int32] = []
    /// Their summed gradients, compact [rows, E]: in `.dense` all of them;
    /// sharded, only the rows with parts from two or more ranks (see
    /// `partBuffer`); with one rank, the model's own compact rows are
    /// used instead. The embedding's part of
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
    /// Where the next row for each rank goes (messages only).
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
    /// Per row of `rows` (sharded), where its summed gradient lies: in
    /// the buffer `partBuffer` names (a `Part`), at `partOffset`. A row
    /// with one part is read where that part lies; only rows with two or
    /// more are summed into `summed`.
    private var partBuffer: [Int32] = []
    private var partOffset: [Int] = []
    /// The most rows one rank's batch holds in a step.
    let rowsPerRank: Int
    /// The positions per row.
    let sequenceLength: Int
    /// With every rank on one machine, memory they all map replaces the
    /// messages of the sharded exchange (see `SharedStep`). Made at the
    /// first sharded exchange (a collective); nil when the machine, the
    /// launch or `HEADLINE_SHARED_MEMORY=0` rules it out.
    private var shared: SharedStep?
    private var sharedDecided = false
    /// With `shared`: where each rank's compact gradient rows lie.
    private var rowRegions: [UnsafeMutablePointer<Float>] = []
    /// With `shared`: the steps whose embedding rows were shared out
    /// (`computeEmbeddingRows`), which tells one step's counters from the
    /// last one's.
    private var rowStep: Int64 = 0
    /// The last step whose rows this rank has put up.
    private var rowsPutUp: Int64 = 0
    /// The rows of one piece of that work: small enough that a rank slowed
    /// down near the end of its product gets help (a real batch of 32
    /// rows has about 380 distinct ids), large enough that each piece's
    /// product runs near full speed (kernel-bench's dxu_piece64: 0.82–0.94
    /// of the whole product's rate here; pieces of 32 rows were slower).
    static let rowsPerPiece = 64
    /// Pieces of other ranks' rows that this rank computed, and pieces of
    /// its own rows, since the start.
    private(set) var piecesForOthers = 0
    private(set) var ownPieces = 0
    /// The dense block's reduction, when `denseGradientsReady` started it
    /// (kept, so that starting one allocates nothing).
    private let pendingDense = PendingReduction()

    /// `rowsPerRank`: the most rows one rank's batch holds in a step.
    init(
        comm: Communicator, model: HeadlineModel, rowsPerRank: Int,
        mode: Mode = .auto
    ) {
        self.comm = comm
        self.rowsPerRank = rowsPerRank
        sequenceLength = model.config.sequenceLength
        sharded = comm.size > 1 && mode != .dense
        denseBlock = model.layout.denseBlock
        let embedding = model.layout["embedding/embeddings"]
        embeddingOffset = embedding.offset
        vocabulary = embedding.shape[0]
        width = embedding.shape[1]
        projectionWidth = 4 * model.config.lstmUnits
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
        // Until the first exchange decides on shared memory (a model may
        // come from an earlier run's exchange).
        model.defersEmbeddingRows = false
        model.embeddingGradientOutput = nil
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
            for j in 0..<rows.count {
                (base + embeddingOffset + Int(rows[j]) * width).update(
                    repeating: 0, count: width)
            }
        }
        rows.removeAll(keepingCapacity: true)
    }

    /// Calls `body` with `rows`, where each one's summed gradient lies
    /// (`rowGradient(k)` for `rows[k]`, E values) and where its updated
    /// weights are to be copied as well (`rowCopy(k)`, or nil), as
    /// `RMSprop.applySparse` takes them. Valid after `exchange` until the
    /// model's next forward pass. An update applied here must store every
    /// row through `rowCopy`: with shared memory, `shareUpdatedRows`
    /// sends the rows from there.
    func withSummedRows<R>(
        _ model: HeadlineModel,
        _ body:
            (
                _ rows: UnsafeBufferPointer<Int32>,
                _ rowGradient: (Int) -> UnsafePointer<Float>,
                _ rowCopy: (Int) -> UnsafeMutablePointer<Float>?
            ) throws -> R
    ) rethrows -> R {
        let w = width
        let own = model.embeddingRowGradients.baseAddress
        let none: (Int) -> UnsafeMutablePointer<Float>? = { _ in nil }
        return try rows.withUnsafeBufferPointer { rows in
            if comm.size == 1, let own {
                return try body(rows, { own + $0 * w }, none)
            }
            return try summed.withUnsafeBufferPointer { summed in
                let base = summed.baseAddress!
                guard sharded else {
                    return try body(rows, { base + $0 * w }, none)
                }
                let outbox = shared.map {
                    $0.updates.view(
                        comm.rank, as: Float.self, count: rows.count * w
                    ).baseAddress!
                }
                return try receiveBuffer.withUnsafeBufferPointer { receive in
                    try partBuffer.withUnsafeBufferPointer { buffers in
                        try partOffset.withUnsafeBufferPointer { offsets in
                            try rowRegions.withUnsafeBufferPointer { regions in
                                let locate = Locator(
                                    summed: base, received: receive.baseAddress,
                                    own: own, regions: regions)
                                return try body(
                                    rows, { locate(buffers[$0], offsets[$0]) },
                                    { k in outbox.map { $0 + k * w } })
                            }
                        }
                    }
                }
            }
        }
    }

    /// Called by the backward pass as soon as the dense block is final
    /// (`HeadlineModel.backward`'s `whenDenseReady`), on every rank, with
    /// the count of sums that `exchange` will reduce: where the exchange
    /// goes through messages (between machines, with the dense exchange,
    /// or with shared memory turned off), starts the dense block's
    /// all-reduce, which then runs while the embedding rows are computed,
    /// and `exchange` waits for it. Through shared memory there is nothing
    /// to start: that exchange is one barrier once every rank is done. (A
    /// collective on the first call, which decides between the two.)
    mutating func denseGradientsReady(_ model: HeadlineModel, sums: Int)
        throws
    {
        guard comm.size > 1 else { return }
        if sharded, let shared = try sharedStep(sums: sums) {
            // The backward pass leaves the rows' product, which follows,
            // to `computeEmbeddingRows`, and their place to this rank's
            // segment.
            model.defersEmbeddingRows = true
            model.embeddingGradientOutput = UnsafeMutableBufferPointer(
                start: rowRegions[comm.rank],
                count: shared.layout.rowCount * width)
            return
        }
        try model.gradients.withUnsafeMutableBufferPointer { g in
            try comm.startAllreduce(
                UnsafeMutableBufferPointer(rebasing: g[denseBlock]), .sum,
                into: pendingDense)
        }
    }

    /// Reduces the gradients of the model's last backward pass over all
    /// ranks, and `sums` with them: afterwards `model.gradients` holds the
    /// summed dense block, `withSummedRows` the summed embedding rows
    /// listed in `rows`, and `sums` its sums over all ranks (the same
    /// count on every rank), each the same on every rank.
    mutating func exchange(_ model: HeadlineModel, sums: inout [Double])
        throws
    {
        let local = model.touchedEmbeddingRows
        guard comm.size > 1 else {
            rows.removeAll(keepingCapacity: true)
            rows.append(contentsOf: local)
            return
        }
        if sharded, let step = try sharedStep(sums: sums.count) {
            try exchangeThroughSharedMemory(model, &sums, step)
            return
        }
        try comm.allreduce(&sums, .sum)
        if pendingDense.isIdle {
            try model.gradients.withUnsafeMutableBufferPointer { g in
                try comm.allreduce(
                    UnsafeMutableBufferPointer(rebasing: g[denseBlock]), .sum)
            }
        } else {
            try pendingDense.wait()
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
                    for k in 0..<rows.count {
                        (out.baseAddress! + k * w).update(
                            from: g.baseAddress! + table + Int(rows[k]) * w,
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
        if let shared {
            try shareThroughSharedMemory(model, shared.updates)
            return
        }
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
    /// they are scanned. Sharded, each rank scans the parts it sent (its
    /// own rows, in its own memory) and the sums it formed of two or more
    /// parts: a sum is non-finite exactly when one of its parts is or when
    /// adding finite parts overflowed, so some rank finds every bad row,
    /// but not every rank does, and the ranks must agree on the answer
    /// (`Trainer` does).
    /// `rows`: whether to look at the embedding rows too.
    func firstNonFiniteGradient(_ model: HeadlineModel, rows scan: Bool = true)
        -> Int?
    {
        let dense = model.gradients.withUnsafeBufferPointer { g in
            firstNonFinite(
                g.baseAddress! + denseBlock.lowerBound, denseBlock.count)
        }
        if let k = dense { return denseBlock.lowerBound + k }
        guard scan else { return nil }
        if sharded, let parts = localParts(model) {
            for (k, id) in model.touchedEmbeddingRows.enumerated() {
                if let j = firstNonFinite(parts + k * width, width) {
                    return embeddingOffset + Int(id) * width + j
                }
            }
        }
        return withSummedRows(model) { rows, gradient, _ in
            for (k, row) in rows.enumerated() {
                if sharded, partBuffer[k] != Part.summed { continue }
                if let j = firstNonFinite(gradient(k), width) {
                    return embeddingOffset + Int(row) * width + j
                }
            }
            return nil
        }
    }

    /// Whether this rank's embedding rows of the last backward pass need
    /// the exact look of `firstNonFiniteGradient`: true when some value,
    /// times twice the number of ranks, is not finite. Otherwise every
    /// value is finite and no sum of one part from each rank can
    /// overflow (each is at most a 2·size-th of the largest float, so even
    /// rounded their sum stays below it), and no summed row can be bad.
    /// Read before `exchange`, while the rows lie where the model left
    /// them.
    func rowsNeedExactCheck(_ model: HeadlineModel) -> Bool {
        let parts = model.embeddingRowGradients
        guard let base = parts.baseAddress else { return false }
        return anyNonFinite(base, parts.count, scale: Float(2 * comm.size))
    }

    /// The value of gradient `index` as `firstNonFiniteGradient` found it:
    /// summed where this rank holds the sum, else (sharded) this rank's
    /// part of it.
    func gradient(at index: Int, _ model: HeadlineModel) -> Float {
        guard index >= embeddingOffset else { return model.gradients[index] }
        let id = Int32((index - embeddingOffset) / width)
        let column = (index - embeddingOffset) % width
        let summed = withSummedRows(model) { rows, gradient, _ in
            rows.firstIndex(of: id).map { gradient($0)[column] }
        }
        if let summed { return summed }
        guard sharded, let parts = localParts(model),
            let k = model.touchedEmbeddingRows.firstIndex(of: id)
        else { return 0 }
        return parts[k * width + column]
    }

    /// Where this rank's parts of the step's embedding rows lie, compact
    /// [touched rows, E]: in its shared segment when shared memory is
    /// used, else where the model left them.
    private func localParts(_ model: HeadlineModel) -> UnsafePointer<Float>? {
        if shared != nil { return UnsafePointer(rowRegions[comm.rank]) }
        return model.embeddingRowGradients.baseAddress
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
        let total = sum(idCounts)
        grow(&allIds, to: total)
        try idCounts.withUnsafeBufferPointer { counts in
            try allIds.withUnsafeMutableBufferPointer { ids in
                try comm.allgatherVariable(local, counts: counts, into: ids)
            }
        }
        indexOwners(total)
    }

    /// Lists the distinct ids among the first `total` of `allIds` by
    /// owner, as `gatherIds` describes.
    private mutating func indexOwners(_ total: Int) {
        // Two passes over the ids: count the new rows per owner, then
        // place each in its owner's part.
        for k in 0..<comm.size { ownedCounts[k] = 0 }
        pass += 1
        // Index loops: a debug build iterates a slice through generic
        // code that allocates at every element.
        for j in 0..<total where mark[Int(allIds[j])] != pass {
            let id = allIds[j]
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
        for j in 0..<total where mark[Int(allIds[j])] != pass {
            let id = allIds[j]
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
        for j in 0..<local.count where owner(local[j]) != me {
            sendCounts[owner(local[j])] += Int32(width)
        }
        var start = 0
        for k in 0..<size {
            let end = start + Int(idCounts[k])
            if k != me {
                for j in start..<end where owner(allIds[j]) == me {
                    receiveCounts[k] += Int32(width)
                }
            }
            start = end
        }
        let sent = sum(sendCounts)
        let received = sum(receiveCounts)
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
                for slot in 0..<local.count where owner(local[slot]) != me {
                    let id = local[slot]
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
        // The sums, in rank order.
        beginSums()
        let slots = slot, ids = allIds, counts = idCounts
        withSums(model) { addPart in
            var from = 0
            var start = 0
            for k in 0..<size {
                let end = start + Int(counts[k])
                defer { start = end }
                if k == me {
                    for j in 0..<local.count where owner(local[j]) == me {
                        addPart(Int(slots[Int(local[j])]), Part.own, j * w)
                    }
                    continue
                }
                for j in start..<end where owner(ids[j]) == me {
                    addPart(Int(slots[Int(ids[j])]), Part.received, from)
                    from += w
                }
            }
        }
    }

    /// The shared segments, made on the first call (every rank calls
    /// this at the same point of the same step, so it may be a
    /// collective); nil for good when they cannot be had. `sums`: the
    /// count of step sums that travel with the gradients.
    private mutating func sharedStep(sums: Int) throws -> SharedStep? {
        if !sharedDecided {
            sharedDecided = true
            let layout = StepLayout(
                sums: sums, dense: denseBlock.count,
                rows: min(rowsPerRank * sequenceLength, vocabulary),
                width: width, projectionWidth: projectionWidth)
            // A rank owns at most every size-th id: room for all of them,
            // so the segments never have to grow.
            let owned = (vocabulary + comm.size - 1) / comm.size
            let updateBytes = owned * width * MemoryLayout<Float>.stride
            if let made = try SharedSegments.make(
                comm, capacities: [layout.bytes, updateBytes])
            {
                shared = SharedStep(
                    step: made[0], updates: made[1], layout: layout)
                rowRegions = (0..<comm.size).map {
                    made[0].view(
                        $0, as: Float.self, at: layout.rows,
                        count: layout.rowCount * width
                    ).baseAddress!
                }
                // The counters start at 0 (none of their steps), known to
                // every rank before any looks at them.
                for line in 0..<StepLayout.controlLines {
                    made[0].counter(
                        comm.rank, at: layout.counter(line)
                    ).publish(0)
                }
                try made[0].synchronize()
            }
        }
        return shared
    }

    /// Puts this rank's embedding rows' product of the current backward
    /// pass up for sharing (see `computeEmbeddingRows`): its projection
    /// gradient and row count, then the step, for every rank to see. The
    /// backward pass calls this as soon as the projection gradient is
    /// final (`HeadlineModel.backward`'s `whenProjectionReady`), so that
    /// other ranks can take pieces while this one computes the LSTM's
    /// weight gradients; `computeEmbeddingRows` calls it where the pass
    /// did not (a pass without rows, the first step). A no-op unless the
    /// model defers its rows.
    mutating func putUpEmbeddingRows(_ model: HeadlineModel) {
        guard model.defersEmbeddingRows, let shared, rowsPutUp != rowStep + 1
        else { return }
        let me = comm.rank, layout = shared.layout
        let step = rowStep + 1, parity = Int(step & 1)
        rowsPutUp = step
        let n = model.touchedEmbeddingRows.count
        let mine = model.projectionGradients
        // The projection region has room for as many rows as the rows'
        // region; the exchange checks the rows again, but only later.
        precondition(n <= layout.rowCount, "a step larger than its segment")
        if n > 0 {
            shared.step.view(
                me, as: Float.self, at: layout.projection, count: mine.count
            ).baseAddress!.update(from: mine.baseAddress!, count: mine.count)
        }
        // Last step's counters of the other parity are reset for the
        // next step: every rank finished with them before the last step's
        // barrier, which this rank has passed.
        func control(_ line: Int) -> SharedCounter {
            shared.step.counter(me, at: layout.counter(line))
        }
        control(StepLayout.Control.next + 1 - parity).publish(0)
        control(StepLayout.Control.done + 1 - parity).publish(0)
        control(StepLayout.Control.rowCount).publish(Int64(n))
        control(StepLayout.Control.ready).publish(step)
    }

    /// Computes the embedding rows that the last backward pass left to the
    /// exchange (`HeadlineModel.defersEmbeddingRows`, set with shared
    /// memory), with every rank's product shared out among all ranks.
    ///
    /// The product is about a third of a backward pass on real batches,
    /// and it comes last, just before the ranks wait for each other: a
    /// rank that the machine slowed down in this step (on a shared host,
    /// one core often runs 20–40% slower than the other for a few steps)
    /// gets help with it instead of being waited for. Each rank puts its
    /// rows up (`putUpEmbeddingRows`), then takes pieces of
    /// `rowsPerPiece` rows, its own first, then those of every other rank
    /// still at work, and returns once all of its own pieces are done, by
    /// whichever rank. A piece's rows are the same bits whoever computes
    /// it (`HeadlineModel.embeddingRowGradients(_:projection:into:)`; the
    /// replicas hold the same weights), so the sharing changes no result.
    /// Every rank calls this in every step, with or without rows; a no-op
    /// where the model computed the rows itself. `whenPutUp` runs once
    /// this rank's rows are up for sharing (a test's delay).
    mutating func computeEmbeddingRows(
        _ model: HeadlineModel, whenPutUp: () -> Void = {}
    ) throws {
        guard model.defersEmbeddingRows, let shared else { return }
        putUpEmbeddingRows(model)
        let me = comm.rank, size = comm.size, w = width
        let layout = shared.layout, segments = shared.step
        rowStep += 1
        let step = rowStep, parity = Int(step & 1)
        precondition(rowsPutUp == step)
        func counter(_ rank: Int, _ line: Int) -> SharedCounter {
            segments.counter(rank, at: layout.counter(line))
        }
        func pieces(_ rows: Int) -> Int64 {
            Int64((rows + Self.rowsPerPiece - 1) / Self.rowsPerPiece)
        }
        // Takes rank `rank`'s pieces until none is left.
        func work(on rank: Int, rows: Int) {
            let count = pieces(rows)
            let next = counter(rank, StepLayout.Control.next + parity)
            let done = counter(rank, StepLayout.Control.done + parity)
            let from = segments.view(
                rank, as: Float.self, at: layout.projection,
                count: rows * projectionWidth
            ).baseAddress!
            let into = rowRegions[rank]
            while true {
                let piece = Int(next.add(1))
                if piece >= count { return }
                let start = piece * Self.rowsPerPiece
                let end = min(start + Self.rowsPerPiece, rows)
                model.embeddingRowGradients(
                    start..<end, projection: from, into: into + start * w)
                done.add(1)
                if rank != me { piecesForOthers += 1 }
            }
        }
        whenPutUp()
        let n = model.touchedEmbeddingRows.count
        work(on: me, rows: n)
        for offset in 1..<size {
            let rank = (me + offset) % size
            // Its rows are known once it has put them up; no rank can be
            // a step ahead, since the last step's barriers need this one.
            counter(rank, StepLayout.Control.ready).wait { $0 >= step }
            let rows = Int(counter(rank, StepLayout.Control.rowCount).value)
            work(on: rank, rows: rows)
        }
        // Pieces of this rank's that another rank took may still be under
        // way.
        let total = pieces(n)
        counter(me, StepLayout.Control.done + parity).wait { $0 >= total }
        ownPieces += Int(total)
    }

    /// The sharded exchange through shared memory, with one barrier: each
    /// rank lays out its step sums, dense gradients, touched ids and their
    /// compact gradient rows (which the backward pass writes there) in its
    /// segment; after the barrier every rank adds up the sums and the
    /// dense block in rank order, and each owner adds its rows' parts in
    /// rank order straight from every rank's segment. Every result is the
    /// same on every rank, and the rows are not copied at all.
    private mutating func exchangeThroughSharedMemory(
        _ model: HeadlineModel, _ sums: inout [Double], _ shared: SharedStep
    ) throws {
        let me = comm.rank, size = comm.size, w = width, owner = self.owner
        let step = shared.step, layout = shared.layout
        let local = model.touchedEmbeddingRows
        precondition(
            local.count <= layout.rowCount && sums.count == layout.sumCount,
            "a step larger than its shared segment")
        func sumsOf(_ k: Int) -> UnsafeMutableBufferPointer<Double> {
            step.view(k, as: Double.self, at: layout.sums, count: sums.count)
        }
        func countOf(_ k: Int) -> Int {
            Int(step.view(k, as: Int32.self, at: layout.idCount, count: 1)[0])
        }
        func idsOf(_ k: Int, _ n: Int) -> UnsafeMutableBufferPointer<Int32> {
            step.view(k, as: Int32.self, at: layout.ids, count: n)
        }
        let denseCount = denseBlock.count
        func denseOf(_ k: Int) -> UnsafeMutablePointer<Float> {
            step.view(k, as: Float.self, at: layout.dense, count: denseCount)
                .baseAddress!
        }
        // This rank's part.
        _ = sumsOf(me).update(fromContentsOf: sums)
        step.view(me, as: Int32.self, at: layout.idCount, count: 1)[0] =
            Int32(local.count)
        _ = idsOf(me, local.count).update(fromContentsOf: local)
        model.gradients.withUnsafeBufferPointer { g in
            denseOf(me).update(
                from: g.baseAddress! + denseBlock.lowerBound,
                count: denseCount)
        }
        let compact = model.embeddingRowGradients
        precondition(
            compact.count == 0
                || compact.baseAddress! == UnsafePointer(rowRegions[me]),
            "the embedding rows are not in this rank's segment")
        try step.synchronize()
        // Sums and dense gradients, in rank order (the first copied).
        for j in 0..<sums.count {
            var total = sumsOf(0)[j]
            for k in 1..<size { total += sumsOf(k)[j] }
            sums[j] = total
        }
        model.gradients.withUnsafeMutableBufferPointer { g in
            let out = g.baseAddress! + denseBlock.lowerBound
            out.update(from: denseOf(0), count: denseCount)
            for k in 1..<size { add(denseOf(k), into: out, denseCount) }
        }
        // Every rank's ids, then the rows by owner.
        var total = 0
        for k in 0..<size {
            idCounts[k] = Int32(countOf(k))
            total += countOf(k)
        }
        grow(&allIds, to: total)
        var at = 0
        for k in 0..<size {
            let n = countOf(k)
            let ids = idsOf(k, n)
            for j in 0..<n { allIds[at + j] = ids[j] }
            at += n
        }
        indexOwners(total)
        // The sums of this rank's rows, in rank order.
        beginSums()
        let slots = slot, ids = allIds, counts = idCounts
        withSums(model) { addPart in
            var start = 0
            for k in 0..<size {
                let end = start + Int(counts[k])
                defer { start = end }
                for j in start..<end where owner(ids[j]) == me {
                    addPart(Int(slots[Int(ids[j])]), Int32(k), (j - start) * w)
                }
            }
        }
        // The updated rows go straight into this rank's segment (see
        // `withSummedRows`), which has room for every row it can own.
        precondition(
            (ownedStart[me + 1] - ownedStart[me]) * w
                * MemoryLayout<Float>.stride <= shared.updates.capacity)
    }

    /// `shareUpdatedRows` through shared memory: the update has stored
    /// each owner's rows in its segment as well (`withSummedRows`'
    /// `rowCopy`), and after one barrier every rank copies the others'
    /// rows from where they lie into its weights.
    private func shareThroughSharedMemory(
        _ model: HeadlineModel, _ updates: SharedSegments
    ) throws {
        let me = comm.rank, w = width, table = embeddingOffset
        try updates.synchronize()
        model.parameters.withUnsafeMutableBufferPointer { p in
            for k in 0..<comm.size where k != me {
                let from = updates.view(
                    k, as: Float.self, count: Int(ownedCounts[k]) * w
                ).baseAddress!
                for slot in ownedStart[k]..<ownedStart[k + 1] {
                    (p.baseAddress! + table + Int(ownedRows[slot]) * w).update(
                        from: from + (slot - ownedStart[k]) * w, count: w)
                }
            }
        }
    }

    /// Starts the sums of the rows this rank owns: `rows` lists them, and
    /// none has a part yet.
    private mutating func beginSums() {
        let me = comm.rank
        let mine = ownedStart[me + 1] - ownedStart[me]
        grow(&summed, to: mine * width)
        grow(&partBuffer, to: mine)
        grow(&partOffset, to: mine)
        for s in 0..<mine { partBuffer[s] = Part.none }
        rows.removeAll(keepingCapacity: true)
        rows.append(contentsOf: ownedRows[ownedStart[me]..<ownedStart[me + 1]])
    }

    /// Calls `body` with `addPart(s, buffer, offset)`, which adds the part
    /// at `offset` in `buffer` (a `Part`) to the sum of `rows[s]`. Parts
    /// must come in rank order; the first is only noted, and the sum is
    /// formed from the second on, so each sum is its parts added in rank
    /// order.
    private mutating func withSums(
        _ model: HeadlineModel,
        _ body: (_ addPart: (Int, Int32, Int) -> Void) -> Void
    ) {
        let w = width
        let own = model.embeddingRowGradients.baseAddress
        let regions = rowRegions
        summed.withUnsafeMutableBufferPointer { out in
            receiveBuffer.withUnsafeBufferPointer { receive in
                partBuffer.withUnsafeMutableBufferPointer { buffers in
                    partOffset.withUnsafeMutableBufferPointer { offsets in
                        regions.withUnsafeBufferPointer { regions in
                            let sums = out.baseAddress!
                            let locate = Locator(
                                summed: sums, received: receive.baseAddress,
                                own: own, regions: regions)
                            body { s, buffer, offset in
                                if buffers[s] == Part.none {
                                    buffers[s] = buffer
                                    offsets[s] = offset
                                    return
                                }
                                let row = sums + s * w
                                if buffers[s] != Part.summed {
                                    row.update(
                                        from: locate(buffers[s], offsets[s]),
                                        count: w)
                                    buffers[s] = Part.summed
                                    offsets[s] = s * w
                                }
                                add(locate(buffer, offset), into: row, w)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Makes `buffer` hold at least `count` values, keeping none of them.
    private func grow<T: Numeric>(_ buffer: inout [T], to count: Int) {
        if buffer.count < count {
            buffer = [T](repeating: 0, count: max(count, buffer.count * 2))
        }
    }
}

/// The buffers a part of a summed row can lie in: a rank's outbox in
/// shared memory (the rank's number, 0 or more), or one of these.
private enum Part {
    /// No part yet.
    static let none: Int32 = -4
    /// `summed`: the row has two or more parts.
    static let summed: Int32 = -3
    /// `receiveBuffer`, where messages from other ranks arrived.
    static let received: Int32 = -2
    /// This rank's compact rows, where the model's backward pass left them.
    static let own: Int32 = -1
}

/// Turns a `Part` and an offset into an address.
private struct Locator {
    let summed: UnsafePointer<Float>
    let received: UnsafePointer<Float>?
    let own: UnsafePointer<Float>?
    /// Each rank's compact rows in shared memory, when used.
    let regions: UnsafeBufferPointer<UnsafeMutablePointer<Float>>

    @inline(__always)
    func callAsFunction(_ buffer: Int32, _ offset: Int) -> UnsafePointer<Float>
    {
        switch buffer {
        case Part.summed: return summed + offset
        case Part.received: return received! + offset
        case Part.own: return own! + offset
        default: return UnsafePointer(regions[Int(buffer)]) + offset
        }
    }
}

/// The shared memory of the sharded exchange: `step` holds each rank's
/// part of the step (laid out by `layout`), `updates` the rows each owner
/// updated.
private struct SharedStep {
    let step: SharedSegments
    let updates: SharedSegments
    let layout: StepLayout
}

/// Where each part of a rank's step lies in its shared segment, in bytes:
/// the step sums (Double), the count of touched ids and the ids (Int32),
/// the dense block's gradients, the projection gradient per touched id
/// and the compact rows (Float), and the counters that share out the
/// rows' product (`Control`), each region starting on a 64-byte line.
private struct StepLayout {
    let sumCount, rowCount: Int
    let sums, idCount, ids, dense, projection, rows, control, bytes: Int

    /// The counters of `computeEmbeddingRows`, one per 64-byte line (each
    /// is changed by every rank), at `counter(line)`.
    enum Control {
        /// The last step whose rows this rank has put up for sharing.
        static let ready = 0
        /// That step's row count.
        static let rowCount = 1
        /// The next piece to hand out, for even and odd steps.
        static let next = 2
        /// The pieces finished, for even and odd steps.
        static let done = 4
    }
    static let controlLines = 6

    /// Where counter `line` (a `Control` value) lies.
    func counter(_ line: Int) -> Int { control + 64 * line }

    init(sums: Int, dense: Int, rows: Int, width: Int, projectionWidth: Int) {
        func line(_ bytes: Int) -> Int { (bytes + 63) / 64 * 64 }
        let float = MemoryLayout<Float>.stride
        sumCount = sums
        rowCount = rows
        self.sums = 0
        idCount = line(sums * MemoryLayout<Double>.stride)
        ids = idCount + 64
        self.dense = ids + line(rows * MemoryLayout<Int32>.stride)
        projection = self.dense + line(dense * float)
        self.rows = projection + line(rows * projectionWidth * float)
        control = self.rows + line(rows * width * float)
        bytes = control + 64 * StepLayout.controlLines
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

/// Whether some of the `n` floats at `x`, times `scale`, is a NaN or an
/// infinity: x · scale · 0 is 0 exactly when x · scale is finite, and a
/// NaN survives any sum, so one vector sum answers.
func anyNonFinite(_ x: UnsafePointer<Float>, _ n: Int, scale: Float) -> Bool {
    var lanes = SIMD16<Float>()
    var k = 0
    while k + 16 <= n {
        lanes +=
            UnsafeRawPointer(x + k).loadUnaligned(as: SIMD16<Float>.self)
            * scale * 0
        k += 16
    }
    var tail: Float = 0
    while k < n {
        tail += x[k] * scale * 0
        k += 1
    }
    return lanes.sum().isNaN || tail.isNaN
}

/// The index of the first NaN or infinity among `n` floats, or nil.
///
/// The vector test of `anyNonFinite` tells whether to look closer; the
/// scalar search runs only when it says so.
func firstNonFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Int? {
    guard anyNonFinite(x, n, scale: 1) else { return nil }
    return (0..<n).first { !x[$0].isFinite }
}

/// The sum of `counts`. A loop, not `reduce`: a debug build runs
/// `reduce`'s generic code, which allocates, and this is called each step.
private func sum(_ counts: [Int32]) -> Int {
    var total = 0
    for k in 0..<counts.count { total += Int(counts[k]) }
    return total
}
