#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sums over the rows of one batch, for the loss and the metrics.
///
/// Sums rather than means, so that parts computed on different ranks can be
/// added by one all-reduce and divided by the global row count afterwards.
public struct StepSums: Sendable, Equatable {
    /// Σ binary cross-entropy of `main_output` over the rows.
    public var mainLoss: Double = 0
    /// Σ binary cross-entropy of `aux_output` over the rows.
    public var auxLoss: Double = 0
    /// Rows whose thresholded `main_output` equals the label.
    public var mainCorrect: Double = 0
    /// Rows whose thresholded `aux_output` equals the label.
    public var auxCorrect: Double = 0
    /// Rows summed.
    public var rows: Double = 0

    /// Zero sums.
    public init() {}

    /// The number of fields in `packed`.
    public static let packedCount = 5

    /// The fields as an array, in declaration order, for an all-reduce.
    public var packed: [Double] {
        var fields = [Double](repeating: 0, count: StepSums.packedCount)
        pack(into: &fields)
        return fields
    }

    /// Writes `packed`'s values into the first `packedCount` elements of
    /// `fields`, for a caller that reuses one buffer.
    public func pack(into fields: inout [Double]) {
        fields[0] = mainLoss
        fields[1] = auxLoss
        fields[2] = mainCorrect
        fields[3] = auxCorrect
        fields[4] = rows
    }

    /// Sums read back from `packed`'s layout.
    public init(packed p: ArraySlice<Double>) {
        let b = p.startIndex
        mainLoss = p[b]
        auxLoss = p[b + 1]
        mainCorrect = p[b + 2]
        auxCorrect = p[b + 3]
        rows = p[b + 4]
    }

    /// Adds another part's sums.
    public static func += (lhs: inout StepSums, rhs: StepSums) {
        lhs.mainLoss += rhs.mainLoss
        lhs.auxLoss += rhs.auxLoss
        lhs.mainCorrect += rhs.mainCorrect
        lhs.auxCorrect += rhs.auxCorrect
        lhs.rows += rhs.rows
    }
}

/// The headline model: embedding → LSTM → aux head, and
/// [lstm_out, aux_input] → dense layers → main head.
///
/// All weights live in the flat `parameters` buffer and all gradients in
/// the flat `gradients` buffer, both laid out by `layout`. `forward` keeps
/// the activations of the last batch in a workspace that `backward` reads;
/// the workspace grows to the largest batch seen and is then reused, so
/// steady-state steps allocate nothing.
public final class HeadlineModel {
    /// The sizes.
    public let config: ModelConfig
    /// Where each weight lives in `parameters` and `gradients`.
    public let layout: ParameterLayout
    /// Every weight, in `layout`.
    public var parameters: [Float]
    /// The gradient of the loss for every weight, in `layout`.
    public var gradients: [Float]
    /// Whether `backward` adds the embedding rows' gradient into
    /// `gradients` (the default). Off, it stays only in
    /// `embeddingRowGradients`, for a caller that sends those rows to
    /// other ranks and sums them itself.
    public var scattersEmbeddingGradient = true
    /// Memory, owned by the caller and kept alive while set, where
    /// `backward` leaves the compact embedding gradient instead of the
    /// model's own scratch: a caller that shares it with other processes
    /// then has nothing to copy. A pass whose rows do not fit (distinct
    /// ids × E > count) uses the scratch; `embeddingRowGradients` always
    /// says where the last pass put them.
    public var embeddingGradientOutput: UnsafeMutableBufferPointer<Float>?
    /// Whether `backward` stops before the embedding rows' product and
    /// leaves it to the caller (`embeddingRowGradients(_:projection:into:)`
    /// over `projectionGradients`), which may split it into parts and have
    /// other processes compute some of them. `embeddingRowGradients` then
    /// says where the rows belong, and they hold nothing until the caller
    /// has filled them. Only with `scattersEmbeddingGradient` off.
    public var defersEmbeddingRows = false
    /// Where the last backward pass left the compact embedding gradient.
    private var rowGradients: UnsafeMutablePointer<Float>?

    private var work: Workspace
    private let offsets: Offsets
    /// Embedding · LSTM kernel, [V, 4U], while the weights are frozen.
    private var frozenProjection: [Float]?

    /// A model with sizes `config` and all weights zero.
    public init(config: ModelConfig) {
        precondition(config.invalidSizes.isEmpty, "\(config.invalidSizes)")
        self.config = config
        layout = ParameterLayout(config)
        parameters = [Float](repeating: 0, count: layout.count)
        gradients = [Float](repeating: 0, count: layout.count)
        offsets = Offsets(layout, config)
        work = Workspace(config: config, capacity: 0)
    }

    /// Folds the embedding and the LSTM's input projection into one
    /// [V, 4U] table, for inference with weights that no longer change:
    /// `forward` then looks up each id's projected row instead of
    /// multiplying its embedding row by the kernel. The products are the
    /// same (every element is one fused chain in the same order), so the
    /// outputs are bit-identical; only the cost moves to this one call.
    /// Changing `parameters` afterwards, or calling `backward`, requires
    /// `thaw()` first.
    public func freezeInputProjection() {
        let v = config.vocabularySize, e = config.embeddingWidth
        let g4 = 4 * config.lstmUnits
        var table = [Float](repeating: 0, count: v * g4)
        parameters.withUnsafeBufferPointer { w in
            table.withUnsafeMutableBufferPointer { out in
                MatrixProducts.multiply(
                    m: v, n: g4, k: e, w.baseAddress! + offsets.embedding,
                    lda: e, w.baseAddress! + offsets.lstmKernel, ldb: g4,
                    out.baseAddress!, ldc: g4)
            }
        }
        frozenProjection = table
    }

    /// Drops the table that `freezeInputProjection()` made.
    public func thaw() { frozenProjection = nil }

    /// Whether `freezeInputProjection()` is in effect.
    public var isFrozen: Bool { frozenProjection != nil }

    /// Sets every gradient to zero before a step accumulates into them.
    public func zeroGradients() {
        gradients.withUnsafeMutableBufferPointer {
            $0.update(repeating: 0)
        }
    }

    /// Rows of the last forward pass.
    public var lastBatchCount: Int { work.rows }

    /// `sigmoid(main logit)` of row `r` of the last forward pass.
    public func mainProbability(_ r: Int) -> Float {
        Activations.sigmoid(work.mainLogits[r])
    }

    /// `sigmoid(aux logit)` of row `r` of the last forward pass.
    public func auxProbability(_ r: Int) -> Float {
        Activations.sigmoid(work.auxLogits[r])
    }

    /// The main and aux logits of row `r` of the last forward pass.
    public func logits(_ r: Int) -> (main: Float, aux: Float) {
        (work.mainLogits[r], work.auxLogits[r])
    }

    /// `lstm_out` (h_T), [rows, U], of the last forward pass.
    public func lstmOutput() -> [Float] {
        let n = work.rows * config.lstmUnits
        let h =
            work.hidden + config.sequenceLength * work.rows
            * config.lstmUnits
        return Array(UnsafeBufferPointer(start: h, count: n))
    }

    // MARK: Forward

    /// Runs the network on `batch`, keeping what `backward` needs.
    ///
    /// Every id must lie in 0..<V; the data loader checks this with a
    /// message naming the file and row, so here it is a precondition.
    public func forward(_ batch: Batch) {
        precondition(batch.sequenceLength == config.sequenceLength)
        precondition(batch.auxFeatures == config.auxFeatures)
        let rows = batch.count
        if rows > work.capacity {
            work = Workspace(config: config, capacity: rows)
        }
        work.rows = rows
        work.distinct = 0
        rowGradients = nil
        work.kernelTransposedReady = false
        if rows == 0 { return }
        parameters.withUnsafeBufferPointer { wBuffer in
            let w = wBuffer.baseAddress!
            batch.ids.withUnsafeBufferPointer { ids in
                if let table = frozenProjection {
                    table.withUnsafeBufferPointer { p in
                        gatherDistinctRows(
                            ids: ids, rows: rows, source: p.baseAddress!,
                            width: 4 * config.lstmUnits,
                            into: work.projection)
                    }
                } else {
                    // The products read the embedding rows in place.
                    gatherDistinctRows(
                        ids: ids, rows: rows, source: nil, width: 0, into: nil)
                }
                sortRowsByLeadingZeros(ids: ids, rows: rows)
            }
            lstmForward(rows: rows, w: w)
            batch.aux.withUnsafeBufferPointer { aux in
                headsForward(rows: rows, aux: aux.baseAddress!, w: w)
            }
        }
    }

    /// Finds the distinct ids of the batch, copies their rows of `source`
    /// ([V, width]: the frozen projection table), if given, to `into`
    /// [n_u, width] and records each position's slot.
    ///
    /// The LSTM input projection is then computed once per distinct id
    /// rather than once per position: padded, short headlines repeat ids a
    /// lot, and the result is the same.
    private func gatherDistinctRows(
        ids: UnsafeBufferPointer<Int32>, rows: Int,
        source: UnsafePointer<Float>?, width: Int,
        into target: UnsafeMutablePointer<Float>?
    ) {
        let t = config.sequenceLength
        let v = config.vocabularySize
        var distinct = 0
        for b in 0..<rows {
            for s in 0..<t {
                let id = Int(ids[b * t + s])
                precondition(
                    id >= 0 && id < v, "token id \(id) outside 0..<\(v)")
                var slot = Int(work.slotOfId[id])
                if slot < 0 {
                    slot = distinct
                    work.slotOfId[id] = Int32(slot)
                    work.distinctIds[slot] = Int32(id)
                    if let source, let target {
                        (target + slot * width).update(
                            from: source + id * width, count: width)
                    }
                    distinct += 1
                }
                // Time-major, as the recurrence walks it: [T, rows].
                work.positionSlot[s * rows + b] = Int32(slot)
            }
        }
        // Reset the id → slot map for the next batch by touching only the
        // ids used, not all V entries.
        for slot in 0..<distinct {
            work.slotOfId[Int(work.distinctIds[slot])] = -1
        }
        work.distinct = distinct
    }

    /// Orders the rows by their count of leading 0 ids (front padding),
    /// fewest first, so that at step s the rows still in their padding are
    /// the last ones of the order. Their states are all equal (the same
    /// inputs from the same zero state), so the forward recurrence computes
    /// one of them and copies it to the rest, and the backward pass reads
    /// that one's gates: with short, front-padded headlines most of the T
    /// steps of most rows are skipped, and every forward value is the one
    /// the full computation gives (the backward pass's sums over rows are
    /// added in this order, so their rounding may differ).
    ///
    /// Leaves the order in `work.rowOrder` and `work.active[s]`, the rows
    /// out of their padding at step s; `positionSlot` is permuted to
    /// match. A counting sort (stable) into the workspace: the training
    /// step allocates nothing.
    private func sortRowsByLeadingZeros(
        ids: UnsafeBufferPointer<Int32>, rows: Int
    ) {
        let t = config.sequenceLength
        let lead = work.lead, count = work.leadCount
        for k in 0...t { count[k] = 0 }
        for b in 0..<rows {
            var first = t
            for s in 0..<t where ids[b * t + s] != 0 {
                first = s
                break
            }
            lead[b] = Int32(first)
            count[first] += 1
        }
        var running: Int32 = 0
        for s in 0..<t {
            running += count[s]
            work.active[s] = running
        }
        // Each lead's first place in the order, then the rows into place.
        var place: Int32 = 0
        for k in 0...t {
            let n = count[k]
            count[k] = place
            place += n
        }
        for b in 0..<rows {
            let k = Int(lead[b])
            work.rowOrder[Int(count[k])] = Int32(b)
            count[k] += 1
        }
        let slots = work.positionSlot, scratch = work.slotScratch
        for s in 0..<t {
            let row = slots + s * rows
            scratch.update(from: row, count: rows)
            for b in 0..<rows { row[b] = scratch[Int(work.rowOrder[b])] }
        }
    }

    /// The rows the recurrence computes at step `s` of a batch of `rows`:
    /// those out of their padding and one still in it, whose state the
    /// others share (see `sortRowsByLeadingZeros`).
    @inline(__always)
    private func computedRows(_ s: Int, _ rows: Int) -> Int {
        min(rows, Int(work.active[s]) + 1)
    }

    private func lstmForward(rows: Int, w: UnsafePointer<Float>) {
        let t = config.sequenceLength, e = config.embeddingWidth
        let u = config.lstmUnits, g4 = 4 * u
        let kernel = w + offsets.lstmKernel
        let recurrent = w + offsets.lstmRecurrent
        let bias = w + offsets.lstmBias
        // proj[n_u, 4U] = xu[n_u, E] · kernel[E, 4U], xu being the
        // distinct ids' embedding rows, unless the frozen table's rows were
        // gathered into it already.
        if frozenProjection == nil {
            MatrixProducts.multiply(
                m: work.distinct, n: g4, k: e, rows: work.distinctIds,
                of: w + offsets.embedding, ldt: e, kernel, ldb: g4,
                work.projection, ldc: g4)
        }
        let hiddenStride = rows * u
        (work.hidden).update(repeating: 0, count: hiddenStride)
        (work.cell).update(repeating: 0, count: hiddenStride)
        for s in 0..<t {
            let gates = work.gates + s * rows * g4
            let hPrev = work.hidden + s * hiddenStride
            let cPrev = work.cell + s * hiddenStride
            let hNext = hPrev + hiddenStride
            let cNext = cPrev + hiddenStride
            let tanhC = work.tanhCell + s * hiddenStride
            // The rows out of their padding, and one still in it.
            let computed = computedRows(s, rows)
            // z[rows, 4U] = proj[slot] + bias, then += h_{t-1} · recurrent
            for b in 0..<computed {
                let slot = Int(work.positionSlot[s * rows + b])
                Lanes.add(
                    g4, work.projection + slot * g4, bias, into: gates + b * g4)
            }
            MatrixProducts.multiply(
                m: computed, n: g4, k: u, hPrev, lda: u, recurrent, ldb: g4,
                gates, ldc: g4, accumulate: true)
            // The gates in place (i, f, o sigmoid, g tanh), then c, tanh(c)
            // and h, 16 units at a time; row b's z is [i | f | g | o], U
            // each, and its c and h are U wide.
            for b in 0..<computed {
                let z = gates + b * g4
                let k0 = b * u
                Lanes.forEach(u) { j, lanes in
                    let i = VectorActivations.sigmoid(Lanes.load(z + j, lanes))
                    let f = VectorActivations.sigmoid(
                        Lanes.load(z + u + j, lanes))
                    let g = VectorActivations.tanh(
                        Lanes.load(z + 2 * u + j, lanes))
                    let o = VectorActivations.sigmoid(
                        Lanes.load(z + 3 * u + j, lanes))
                    Lanes.store(i, z + j, lanes)
                    Lanes.store(f, z + u + j, lanes)
                    Lanes.store(g, z + 2 * u + j, lanes)
                    Lanes.store(o, z + 3 * u + j, lanes)
                    let c = f * Lanes.load(cPrev + k0 + j, lanes) + i * g
                    let tc = VectorActivations.tanh(c)
                    Lanes.store(c, cNext + k0 + j, lanes)
                    Lanes.store(tc, tanhC + k0 + j, lanes)
                    Lanes.store(o * tc, hNext + k0 + j, lanes)
                }
            }
            // The rows still in their padding share the computed one's
            // state.
            for b in computed..<rows {
                (hNext + b * u).update(
                    from: hNext + (computed - 1) * u, count: u)
                (cNext + b * u).update(
                    from: cNext + (computed - 1) * u, count: u)
            }
        }
        // Back to the batch's row order for the heads.
        reorderRows(
            work.hidden + t * hiddenStride, rows: rows, width: u,
            toBatchOrder: true)
    }

    /// Moves `rows` rows of `width` floats at `base` between the batch's
    /// order and the recurrence's (`work.rowOrder`), through `work.gradA`.
    private func reorderRows(
        _ base: UnsafeMutablePointer<Float>, rows: Int, width: Int,
        toBatchOrder: Bool
    ) {
        let copy = work.gradA
        copy.update(from: base, count: rows * width)
        for b in 0..<rows {
            let original = Int(work.rowOrder[b]) * width
            if toBatchOrder {
                (base + original).update(from: copy + b * width, count: width)
            } else {
                (base + b * width).update(from: copy + original, count: width)
            }
        }
    }

    private func headsForward(
        rows: Int, aux: UnsafePointer<Float>, w: UnsafePointer<Float>
    ) {
        let u = config.lstmUnits, a = config.auxFeatures
        let h = config.denseUnits
        let last = work.hidden + config.sequenceLength * rows * u
        // aux logit [rows, 1] = h_T · aux_output/kernel + bias
        MatrixProducts.multiply(
            m: rows, n: 1, k: u, last, lda: u, w + offsets.auxKernel, ldb: 1,
            work.auxLogits, ldc: 1)
        let auxBias = w[offsets.auxBias]
        for b in 0..<rows { work.auxLogits[b] += auxBias }
        // x0 [rows, U + A] = concatenate(h_T, aux_input)
        let x0 = work.concatenated
        for b in 0..<rows {
            (x0 + b * (u + a)).update(from: last + b * u, count: u)
            (x0 + b * (u + a) + u).update(from: aux + b * a, count: a)
        }
        var input = UnsafePointer(x0)
        var width = u + a
        for layer in 0..<config.denseLayers {
            let out = work.denseOutputs + layer * rows * h
            MatrixProducts.multiply(
                m: rows, n: h, k: width, input, lda: width,
                w + offsets.denseKernels[layer], ldb: h, out, ldc: h)
            let bias = w + offsets.denseBiases[layer]
            for b in 0..<rows {
                for j in 0..<h {
                    out[b * h + j] = max(out[b * h + j] + bias[j], 0)
                }
            }
            input = UnsafePointer(out)
            width = h
        }
        MatrixProducts.multiply(
            m: rows, n: 1, k: h, input, lda: h, w + offsets.mainKernel,
            ldb: 1, work.mainLogits, ldc: 1)
        let mainBias = w[offsets.mainBias]
        for b in 0..<rows { work.mainLogits[b] += mainBias }
    }

    // MARK: Loss and backward

    /// The loss sums of the last forward pass against `labels`.
    public func lossSums(labels: [Float]) -> StepSums {
        var sums = StepSums()
        for b in 0..<work.rows {
            let y = labels[b]
            let zm = work.mainLogits[b], za = work.auxLogits[b]
            sums.mainLoss += Double(
                Activations.binaryCrossEntropy(logit: zm, label: y))
            sums.auxLoss += Double(
                Activations.binaryCrossEntropy(logit: za, label: y))
            // Keras' binary accuracy: prediction p > 0.5, compared for
            // equality with the label.
            let pm: Float = Activations.sigmoid(zm) > 0.5 ? 1 : 0
            let pa: Float = Activations.sigmoid(za) > 0.5 ? 1 : 0
            sums.mainCorrect += pm == y ? 1 : 0
            sums.auxCorrect += pa == y ? 1 : 0
        }
        sums.rows = Double(work.rows)
        return sums
    }

    /// `backward(labels:mainWeight:auxWeight:scale:whenDenseReady:)`
    /// with nothing to do when the dense gradients are ready.
    public func backward(
        labels: [Float], mainWeight: Float, auxWeight: Float, scale: Float
    ) {
        backward(
            labels: labels, mainWeight: mainWeight, auxWeight: auxWeight,
            scale: scale, whenProjectionReady: {}, whenDenseReady: {})
    }

    /// Adds to `gradients` the gradient of
    /// `(mainWeight·Σ main BCE + auxWeight·Σ aux BCE) · scale`
    /// over the rows of the last forward pass.
    ///
    /// With `scale` = 1 / (global batch size) and the parts of all ranks
    /// summed, this is the gradient of Keras' batch-mean loss.
    ///
    /// `parameters` must be as the forward pass left them: the pass reads
    /// the weights again, the batch's embedding rows among them.
    ///
    /// `whenDenseReady` is called once, as soon as every gradient but the
    /// embedding table's is final (before the product that gives the
    /// embedding rows, about a third of the pass on real batches), so that
    /// their reduction can start while the rest is computed. It is called
    /// on a pass without rows too.
    ///
    /// With `defersEmbeddingRows`, `whenProjectionReady` is called once
    /// the projection gradient (`projectionGradients`) is final, before
    /// the LSTM's weight gradients, so that other processes can start on
    /// the embedding rows' product while those are computed. It is not
    /// called on a pass without rows.
    public func backward(
        labels: [Float], mainWeight: Float, auxWeight: Float, scale: Float,
        whenProjectionReady: () -> Void = {},
        whenDenseReady: () throws -> Void
    ) rethrows {
        let rows = work.rows
        if rows == 0 { return try whenDenseReady() }
        precondition(labels.count >= rows)
        precondition(frozenProjection == nil, "backward on frozen weights")
        for b in 0..<rows {
            let y = labels[b]
            // dL/dz = (σ(z) − y) · weight · scale
            work.mainLogitGrad[b] =
                (Activations.sigmoid(work.mainLogits[b]) - y)
                * mainWeight * scale
            work.auxLogitGrad[b] =
                (Activations.sigmoid(work.auxLogits[b]) - y)
                * auxWeight * scale
        }
        parameters.withUnsafeBufferPointer { wBuffer in
            gradients.withUnsafeMutableBufferPointer { gBuffer in
                let w = wBuffer.baseAddress!, g = gBuffer.baseAddress!
                headsBackward(rows: rows, w: w, g: g)
                lstmBackward(rows: rows, w: w, g: g)
            }
        }
        // The hooks run outside the buffers' closures, so the caller may
        // use them.
        if defersEmbeddingRows { whenProjectionReady() }
        parameters.withUnsafeBufferPointer { wBuffer in
            gradients.withUnsafeMutableBufferPointer { gBuffer in
                lstmWeightGradients(
                    w: wBuffer.baseAddress!, g: gBuffer.baseAddress!)
            }
        }
        try whenDenseReady()
        parameters.withUnsafeBufferPointer { wBuffer in
            gradients.withUnsafeMutableBufferPointer { gBuffer in
                embeddingBackward(
                    w: wBuffer.baseAddress!, g: gBuffer.baseAddress!)
            }
        }
    }

    /// Leaves dL/dh_T in `work.hiddenGrad` [rows, U].
    private func headsBackward(
        rows: Int, w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>
    ) {
        let u = config.lstmUnits, a = config.auxFeatures
        let h = config.denseUnits, layers = config.denseLayers
        let last = work.hidden + config.sequenceLength * rows * u
        let top = work.denseOutputs + (layers - 1) * rows * h
        // main_output: dW += x_L^T · dz, db += Σ dz, dx_L = dz · W^T
        MatrixProducts.multiplyTransposedA(
            m: h, n: 1, k: rows, top, lda: h, work.mainLogitGrad, ldb: 1,
            g + offsets.mainKernel, ldc: 1, accumulate: true)
        for b in 0..<rows { g[offsets.mainBias] += work.mainLogitGrad[b] }
        var upper = work.gradA, lower = work.gradB
        MatrixProducts.multiplyTransposedB(
            m: rows, n: h, k: 1, work.mainLogitGrad, lda: 1,
            w + offsets.mainKernel, ldb: 1, upper, ldc: h)
        for layer in stride(from: layers - 1, through: 0, by: -1) {
            let out = work.denseOutputs + layer * rows * h
            let input =
                layer == 0
                ? UnsafePointer(work.concatenated)
                : UnsafePointer(work.denseOutputs + (layer - 1) * rows * h)
            let width = layer == 0 ? u + a : h
            // relu: the gradient passes where the output is positive
            // (its derivative at exactly 0 is 0, as in TensorFlow).
            for k in 0..<(rows * h) where out[k] <= 0 { upper[k] = 0 }
            MatrixProducts.multiplyTransposedA(
                m: width, n: h, k: rows, input, lda: width, upper, ldb: h,
                g + offsets.denseKernels[layer], ldc: h, accumulate: true)
            let biasGrad = g + offsets.denseBiases[layer]
            for b in 0..<rows {
                for j in 0..<h { biasGrad[j] += upper[b * h + j] }
            }
            MatrixProducts.multiplyTransposedB(
                m: rows, n: width, k: h, upper, lda: h,
                w + offsets.denseKernels[layer], ldb: h, lower, ldc: width)
            swap(&upper, &lower)
        }
        // `upper` now holds dL/dx0 [rows, U + A]; its first U columns flow
        // into h_T, and the aux head adds its own part.
        let dh = work.hiddenGrad
        for b in 0..<rows {
            (dh + b * u).update(from: upper + b * (u + a), count: u)
        }
        MatrixProducts.multiplyTransposedA(
            m: u, n: 1, k: rows, last, lda: u, work.auxLogitGrad, ldb: 1,
            g + offsets.auxKernel, ldc: 1, accumulate: true)
        for b in 0..<rows { g[offsets.auxBias] += work.auxLogitGrad[b] }
        MatrixProducts.multiplyTransposedB(
            m: rows, n: u, k: 1, work.auxLogitGrad, lda: 1,
            w + offsets.auxKernel, ldb: 1, dh, ldc: u, accumulate: true)
    }

    /// Back-propagation through time from dL/dh_T, then through the input
    /// projection into the LSTM kernel and the embedding rows.
    private func lstmBackward(
        rows: Int, w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>
    ) {
        let t = config.sequenceLength
        let u = config.lstmUnits, g4 = 4 * u
        let hiddenStride = rows * u
        let recurrent = w + offsets.lstmRecurrent
        let dBias = g + offsets.lstmBias
        let dh = work.hiddenGrad, dc = work.cellGrad
        // dh_T from the heads, in the batch's order, into the recurrence's.
        reorderRows(dh, rows: rows, width: u, toBatchOrder: false)
        dc.update(repeating: 0, count: hiddenStride)
        work.projectionGrad.update(repeating: 0, count: work.distinct * g4)
        // Rᵀ [4U, U], once for all steps: dh_{t-1} = dz · Rᵀ is then a
        // plain product with contiguous rows, which rounds the same as
        // multiplyTransposedB but skips its copy of R at every step.
        let recurrentT = work.recurrentTransposed
        Transpose.run(
            rows: u, cols: g4, recurrent, lda: g4, recurrentT, ldo: u)
        // Rows still in their padding at step s share one state (see
        // sortRowsByLeadingZeros), and every gradient below is linear in
        // dh and dc with coefficients from that state: so their dh and dc
        // are summed into one row, the first of them (the one whose gates
        // the forward pass kept), and the steps of the padding cost one
        // row, not one per row. Rows join that sum as the walk back meets
        // their padding and never leave it, since the number of rows out
        // of their padding only falls with s. The sums of dz over rows
        // that the weights' gradients take are then added in another
        // order, which may change their rounding, not their value.
        //
        // Each step's dz rows, and the h_{t−1} rows they pair with, go
        // one after another into gateGrad [positions, 4U] and
        // recurrentInput [positions, U], for one product for dR at the
        // end.
        var positions = 0
        var above = rows  // The rows out of their padding at step s + 1.
        for s in stride(from: t - 1, through: 0, by: -1) {
            let gates = work.gates + s * rows * g4
            let cPrev = work.cell + s * hiddenStride
            let hPrev = work.hidden + s * hiddenStride
            let tanhC = work.tanhCell + s * hiddenStride
            let active = Int(work.active[s])
            let computed = computedRows(s, rows)
            if active < rows {
                // The rows entering their padding, and the earlier sum.
                let sum = active
                var b = sum + 1
                while b <= min(above, rows - 1) {
                    Lanes.accumulate(u, dh + b * u, into: dh + sum * u)
                    Lanes.accumulate(u, dc + b * u, into: dc + sum * u)
                    b += 1
                }
            }
            above = active
            let dz = work.gateGrad + positions * g4
            (work.recurrentInput + positions * u).update(
                from: hPrev, count: computed * u)
            positions += computed
            // The gates' gradient dz [computed, 4U] from dh and dc
            // [computed, U], 16 units at a time; z holds the activated
            // [i | f | g | o].
            for b in 0..<computed {
                let z = gates + b * g4, d = dz + b * g4
                let k0 = b * u
                Lanes.forEach(u) { j, lanes in
                    let k = k0 + j
                    let i = Lanes.load(z + j, lanes)
                    let f = Lanes.load(z + u + j, lanes)
                    let gg = Lanes.load(z + 2 * u + j, lanes)
                    let o = Lanes.load(z + 3 * u + j, lanes)
                    let tc = Lanes.load(tanhC + k, lanes)
                    let dhk = Lanes.load(dh + k, lanes)
                    let dck =
                        Lanes.load(dc + k, lanes)
                        + dhk * o * (1 - tc * tc)
                    Lanes.store(dck * gg * i * (1 - i), d + j, lanes)
                    Lanes.store(
                        dck * Lanes.load(cPrev + k, lanes) * f * (1 - f),
                        d + u + j, lanes)
                    Lanes.store(dck * i * (1 - gg * gg), d + 2 * u + j, lanes)
                    Lanes.store(dhk * tc * o * (1 - o), d + 3 * u + j, lanes)
                    Lanes.store(dck * f, dc + k, lanes)
                }
            }
            // dh_{t-1} = dz · R^T
            MatrixProducts.multiply(
                m: computed, n: u, k: g4, dz, lda: g4, recurrentT, ldb: u, dh,
                ldc: u)
            for b in 0..<computed {
                let d = dz + b * g4
                let slot = Int(work.positionSlot[s * rows + b])
                Lanes.accumulate(g4, d, into: dBias)
                Lanes.accumulate(g4, d, into: work.projectionGrad + slot * g4)
            }
        }
        work.gatePositions = positions
    }

    /// The LSTM's weight gradients from what `lstmBackward` left: dR and
    /// dK, the last of the dense gradients.
    private func lstmWeightGradients(
        w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>
    ) {
        let e = config.embeddingWidth, u = config.lstmUnits, g4 = 4 * u
        let positions = work.gatePositions
        // recurrent: dR[U, 4U] += Σ h_{t-1}ᵀ · dz over the computed
        // positions, as one product ([positions, U]ᵀ · [positions, 4U]):
        // per step its depth would be only `rows`, and each tile of dR
        // would be loaded and stored T times.
        MatrixProducts.multiplyTransposedA(
            m: u, n: g4, k: positions, work.recurrentInput, lda: u,
            work.gateGrad, ldb: g4, g + offsets.lstmRecurrent, ldc: g4,
            accumulate: true)
        // kernel: dK[E, 4U] += xuᵀ · dproj, the last dense gradient (xu as
        // in the forward pass: the weights have not changed since)
        MatrixProducts.multiplyTransposedA(
            m: e, n: g4, k: work.distinct, rows: work.distinctIds,
            of: w + offsets.embedding, ldt: e, work.projectionGrad, ldb: g4,
            g + offsets.lstmKernel, ldc: g4, accumulate: true)
    }

    /// The embedding rows' gradient, d xu [n_u, E] = dproj · Kᵀ, from the
    /// `projectionGrad` that `lstmBackward` left; into the table too when
    /// `scattersEmbeddingGradient`. With `defersEmbeddingRows`, only says
    /// where the rows go.
    private func embeddingBackward(
        w: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>
    ) {
        let e = config.embeddingWidth, g4 = 4 * config.lstmUnits
        let n = work.distinct
        var xuGrad = work.xuGrad
        if let output = embeddingGradientOutput, n * e <= output.count {
            xuGrad = output.baseAddress!
        }
        rowGradients = xuGrad
        if defersEmbeddingRows {
            precondition(
                !scattersEmbeddingGradient,
                "deferred embedding rows cannot be scattered")
            transposeKernel(w)
            return
        }
        MatrixProducts.multiplyTransposedB(
            m: n, n: e, k: g4, work.projectionGrad, lda: g4,
            w + offsets.lstmKernel, ldb: g4, xuGrad, ldc: e)
        guard scattersEmbeddingGradient else { return }
        let dEmbedding = g + offsets.embedding
        for slot in 0..<n {
            Lanes.accumulate(
                e, xuGrad + slot * e,
                into: dEmbedding + Int(work.distinctIds[slot]) * e)
        }
    }

    /// The last backward pass's gradient of the LSTM's input projection,
    /// summed per distinct id: [distinct ids, 4U], row k for
    /// `touchedEmbeddingRows[k]`. The embedding rows' gradient is this
    /// times the LSTM kernel transposed. Valid until the next forward pass.
    public var projectionGradients: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(
            start: work.projectionGrad,
            count: work.distinct * 4 * config.lstmUnits)
    }

    /// Rows `rows` of the embedding rows' gradient for a pass whose
    /// projection gradient (as `projectionGradients` lays it out) is at
    /// `projection`: output[rows.count, E] = projection[rows] · Kᵀ, with
    /// this model's LSTM kernel K (the weights must not have changed since
    /// the last forward pass). A row's values depend only on its own
    /// projection row and K, whatever the split (one fused chain per value
    /// in the same order, as in the pass's A · Bᵀ), so the parts of a
    /// deferred pass, computed here by any replica with the same weights,
    /// give exactly the rows `backward` would have.
    public func embeddingRowGradients(
        _ rows: Range<Int>, projection: UnsafePointer<Float>,
        into output: UnsafeMutablePointer<Float>
    ) {
        if !work.kernelTransposedReady {
            // A pass without rows helps other ranks with theirs.
            parameters.withUnsafeBufferPointer {
                transposeKernel($0.baseAddress!)
            }
        }
        let e = config.embeddingWidth, g4 = 4 * config.lstmUnits
        MatrixProducts.multiply(
            m: rows.count, n: e, k: g4, projection + rows.lowerBound * g4,
            lda: g4, work.kernelTransposed, ldb: e, output, ldc: e)
    }

    /// Kᵀ [4U, E] into the workspace, so that each piece of a deferred
    /// product reads its B rows in place: as A · Bᵀ, every piece would
    /// transpose all of K again. Kept until the next forward pass.
    private func transposeKernel(_ w: UnsafePointer<Float>) {
        let e = config.embeddingWidth, g4 = 4 * config.lstmUnits
        Transpose.run(
            rows: e, cols: g4, w + offsets.lstmKernel, lda: g4,
            work.kernelTransposed, ldo: e)
        work.kernelTransposedReady = true
    }

    /// Ids whose embedding row the last backward pass wrote.
    public var touchedEmbeddingRows: UnsafeBufferPointer<Int32> {
        UnsafeBufferPointer(start: work.distinctIds, count: work.distinct)
    }

    /// The last backward pass's embedding gradient in compact form
    /// [distinct ids, E]: row k belongs to `touchedEmbeddingRows[k]`.
    /// Valid until the next forward pass.
    public var embeddingRowGradients: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(
            start: rowGradients ?? work.xuGrad,
            count: work.distinct * config.embeddingWidth)
    }
}

/// Offsets of each weight in the flat buffers, looked up once.
private struct Offsets {
    let embedding, lstmKernel, lstmRecurrent, lstmBias: Int
    let auxKernel, auxBias, mainKernel, mainBias: Int
    let denseKernels, denseBiases: [Int]

    init(_ layout: ParameterLayout, _ config: ModelConfig) {
        embedding = layout["embedding/embeddings"].offset
        lstmKernel = layout["lstm/lstm_cell/kernel"].offset
        lstmRecurrent = layout["lstm/lstm_cell/recurrent_kernel"].offset
        lstmBias = layout["lstm/lstm_cell/bias"].offset
        auxKernel = layout["aux_output/kernel"].offset
        auxBias = layout["aux_output/bias"].offset
        mainKernel = layout["main_output/kernel"].offset
        mainBias = layout["main_output/bias"].offset
        denseKernels = (0..<config.denseLayers).map {
            layout["\(ModelConfig.denseName($0))/kernel"].offset
        }
        denseBiases = (0..<config.denseLayers).map {
            layout["\(ModelConfig.denseName($0))/bias"].offset
        }
    }
}

/// Activations and scratch space for one batch of up to `capacity` rows.
///
/// One allocation, carved into named regions; sized by the worst case (all
/// B·T ids distinct), so no step ever needs more.
private final class Workspace {
    let capacity: Int
    var rows = 0
    var distinct = 0
    private let floats: UnsafeMutablePointer<Float>
    private let ints: UnsafeMutablePointer<Int32>
    private let floatCount: Int
    private let intCount: Int

    // Ints: the id → slot map [V] (−1 when unused), distinct ids [n_u] and
    // each position's slot [T, rows]; for the order of the recurrence (see
    // sortRowsByLeadingZeros) the rows in that order [rows], the rows out
    // of their padding at each step [T], each row's leading zeros [rows],
    // a count per number of them [T + 1] and a row of slots [rows].
    let slotOfId, distinctIds, positionSlot: UnsafeMutablePointer<Int32>
    let rowOrder, active, lead, leadCount: UnsafeMutablePointer<Int32>
    let slotScratch: UnsafeMutablePointer<Int32>
    // Floats, shapes for the current `rows` and n_u.
    let projection: UnsafeMutablePointer<Float>  // [n_u, 4U]
    let gates: UnsafeMutablePointer<Float>  // [T, rows, 4U] i f g o
    let hidden: UnsafeMutablePointer<Float>  // [T + 1, rows, U]
    let cell: UnsafeMutablePointer<Float>  // [T + 1, rows, U]
    let tanhCell: UnsafeMutablePointer<Float>  // [T, rows, U]
    let concatenated: UnsafeMutablePointer<Float>  // [rows, U + A]
    let denseOutputs: UnsafeMutablePointer<Float>  // [layers, rows, H]
    let mainLogits, auxLogits: UnsafeMutablePointer<Float>  // [rows]
    let mainLogitGrad, auxLogitGrad: UnsafeMutablePointer<Float>  // [rows]
    let gradA, gradB: UnsafeMutablePointer<Float>  // [rows, max(U+A, H)]
    let hiddenGrad, cellGrad: UnsafeMutablePointer<Float>  // [rows, U]
    let gateGrad: UnsafeMutablePointer<Float>  // [positions, 4U]
    let recurrentInput: UnsafeMutablePointer<Float>  // [positions, U]
    let recurrentTransposed: UnsafeMutablePointer<Float>  // [4U, U]
    let projectionGrad: UnsafeMutablePointer<Float>  // [n_u, 4U]
    let xuGrad: UnsafeMutablePointer<Float>  // [n_u, E]
    let kernelTransposed: UnsafeMutablePointer<Float>  // [4U, E]
    /// Whether `kernelTransposed` holds the current LSTM kernel: from a
    /// deferred backward pass until the next forward pass.
    var kernelTransposedReady = false
    /// The rows of `gateGrad` and `recurrentInput` the last backward pass
    /// filled.
    var gatePositions = 0

    init(config: ModelConfig, capacity: Int) {
        self.capacity = capacity
        let t = config.sequenceLength, e = config.embeddingWidth
        let u = config.lstmUnits, a = config.auxFeatures
        let h = config.denseUnits, v = config.vocabularySize
        let positions = capacity * t
        let maxDistinct = min(positions, v)
        let wide = max(u + a, h)

        var intSizes = [
            v, maxDistinct, positions, capacity, t, capacity, t + 1, capacity,
        ]
        intCount = intSizes.reduce(0, +)
        ints = .allocate(capacity: max(intCount, 1))
        ints.initialize(repeating: 0, count: max(intCount, 1))
        var cursor = ints
        func takeInt(_ n: Int) -> UnsafeMutablePointer<Int32> {
            defer { cursor += n }
            return cursor
        }
        slotOfId = takeInt(intSizes.removeFirst())
        distinctIds = takeInt(intSizes.removeFirst())
        positionSlot = takeInt(intSizes.removeFirst())
        rowOrder = takeInt(intSizes.removeFirst())
        active = takeInt(intSizes.removeFirst())
        lead = takeInt(intSizes.removeFirst())
        leadCount = takeInt(intSizes.removeFirst())
        slotScratch = takeInt(intSizes.removeFirst())
        slotOfId.update(repeating: -1, count: v)

        let sizes = [
            maxDistinct * 4 * u, positions * 4 * u,
            (t + 1) * capacity * u, (t + 1) * capacity * u, positions * u,
            capacity * (u + a), config.denseLayers * capacity * h,
            capacity, capacity, capacity, capacity,
            capacity * wide, capacity * wide, capacity * u, capacity * u,
            positions * 4 * u, maxDistinct * 4 * u, maxDistinct * e,
            4 * u * u, positions * u, 4 * u * e,
        ]
        floatCount = sizes.reduce(0, +)
        // Zeroed by the system page by page as first touched, so regions
        // sized for the worst case cost memory only as far as a batch
        // uses them (the compact gradient's, none at all when the caller
        // provides `embeddingGradientOutput`).
        guard
            let zeroed = calloc(max(floatCount, 1), MemoryLayout<Float>.stride)
        else {
            fatalError("out of memory for a workspace of \(floatCount) floats")
        }
        floats = zeroed.bindMemory(to: Float.self, capacity: max(floatCount, 1))
        var regions: [UnsafeMutablePointer<Float>] = []
        var at = floats
        for size in sizes {
            regions.append(at)
            at += size
        }
        projection = regions[0]
        gates = regions[1]
        hidden = regions[2]
        cell = regions[3]
        tanhCell = regions[4]
        concatenated = regions[5]
        denseOutputs = regions[6]
        mainLogits = regions[7]
        auxLogits = regions[8]
        mainLogitGrad = regions[9]
        auxLogitGrad = regions[10]
        gradA = regions[11]
        gradB = regions[12]
        hiddenGrad = regions[13]
        cellGrad = regions[14]
        gateGrad = regions[15]
        projectionGrad = regions[16]
        xuGrad = regions[17]
        recurrentTransposed = regions[18]
        recurrentInput = regions[19]
        kernelTransposed = regions[20]
    }

    deinit {
        free(floats)
        ints.deallocate()
    }
}
