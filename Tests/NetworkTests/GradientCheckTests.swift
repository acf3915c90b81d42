import XCTest

@testable import Network

/// Central finite differences of an independent Double implementation
/// against the model's analytic float32 gradients, on random small sizes.
final class GradientCheckTests: XCTestCase {
    func testGradientsMatchFiniteDifferencesOnRandomSizes() {
        var rng = SeededGenerator(seed: 42)
        for trial in 0..<4 {
            let config = ModelConfig(
                vocabularySize: 5 + Int(rng.next() % 20),
                embeddingWidth: 1 + Int(rng.next() % 6),
                sequenceLength: 1 + Int(rng.next() % 5),
                lstmUnits: 1 + Int(rng.next() % 4),
                auxFeatures: Int(rng.next() % 4),
                denseUnits: 1 + Int(rng.next() % 5),
                denseLayers: 1 + Int(rng.next() % 3))
            let rows = 1 + Int(rng.next() % 4)
            check(config, rows: rows, rng: &rng, trial: trial)
        }
    }

    /// Front-padded rows, as imported headlines are: the recurrence
    /// computes one state for all rows still in their padding and the
    /// backward pass reads it for each, in an order sorted by padding.
    /// Rows with no padding, all padding, and ties.
    func testGradientsMatchFiniteDifferencesWithFrontPadding() {
        var rng = SeededGenerator(seed: 43)
        let config = ModelConfig(
            vocabularySize: 12, embeddingWidth: 3, sequenceLength: 6,
            lstmUnits: 3, auxFeatures: 2, denseUnits: 3, denseLayers: 2)
        check(
            config, rows: 6, rng: &rng, trial: 0,
            leadingZeros: [4, 0, 6, 2, 4, 5])
    }

    private func check(
        _ config: ModelConfig, rows: Int, rng: inout SeededGenerator,
        trial: Int, leadingZeros: [Int]? = nil
    ) {
        let model = HeadlineModel(config: config)
        // Weights of moderate size keep the LSTM and relus away from
        // saturation, where finite differences are unreliable.
        for k in 0..<model.parameters.count {
            model.parameters[k] = Float(rng.nextUnit() * 1.2 - 0.6)
        }
        let random = RandomBatch(
            config, rows: rows, rng: &rng, leadingZeros: leadingZeros
        ) { rng in
            [0, 1, 0.3][Int(rng.next() % 3)]
        }
        let batch = random.batch
        let allIds = random.ids, allAux = random.aux, labels = random.labels
        let scale: Float = 1 / Float(rows + 1)
        model.zeroGradients()
        model.forward(batch)
        model.backward(
            labels: batch.labels, mainWeight: 1, auxWeight: 0.2,
            scale: scale)

        let reference = ReferenceModel(config)
        var w = model.parameters.map(Double.init)
        let step = 1e-5
        var worst = 0.0
        for k in 0..<w.count {
            let saved = w[k]
            w[k] = saved + step
            let up = reference.loss(
                w, ids: allIds, aux: allAux, labels: labels, rows: rows,
                mainWeight: 1, auxWeight: 0.2, scale: Double(scale))
            w[k] = saved - step
            let down = reference.loss(
                w, ids: allIds, aux: allAux, labels: labels, rows: rows,
                mainWeight: 1, auxWeight: 0.2, scale: Double(scale))
            w[k] = saved
            let numeric = (up - down) / (2 * step)
            let analytic = Double(model.gradients[k])
            // float32 backward against a Double central difference:
            // 2e-5 absolute plus 1e-3 relative covers float rounding over
            // a few dozen operations, while a wrong term is off by far more.
            let error = abs(numeric - analytic)
            worst = max(worst, error / (2e-5 + 1e-3 * abs(numeric)))
            XCTAssertLessThanOrEqual(
                error, 2e-5 + 1e-3 * abs(numeric),
                "trial \(trial) \(config) parameter \(k) "
                    + "(\(name(of: k, in: model.layout))): "
                    + "numeric \(numeric), analytic \(analytic)")
        }
        XCTAssertLessThan(worst, 1)
    }

    func testParameterCountMatchesTheLayoutAndReportsOverflow() {
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<50 {
            let config = ModelConfig(
                vocabularySize: 1 + Int(rng.next() % 500),
                embeddingWidth: 1 + Int(rng.next() % 40),
                sequenceLength: 3, lstmUnits: 1 + Int(rng.next() % 9),
                auxFeatures: Int(rng.next() % 6),
                denseUnits: 1 + Int(rng.next() % 9),
                denseLayers: 1 + Int(rng.next() % 4))
            XCTAssertEqual(
                config.parameterCount, ParameterLayout(config).count,
                "\(config)")
        }
        let huge = ModelConfig(
            vocabularySize: 1 << 40, embeddingWidth: 1 << 40)
        XCTAssertNil(huge.parameterCount)
    }

    private func name(of index: Int, in layout: ParameterLayout) -> String {
        layout.entries.first { $0.range.contains(index) }?.name ?? "?"
    }
}

/// The sparse embedding update against the dense one, bit for bit.
final class SparseRMSpropTests: XCTestCase {
    /// Rows of 7 values, and of 300: two blocks of 128 that the pending
    /// decays go through eight vectors at a time, and a tail.
    func testSparseRowsMatchTheDenseUpdateBitForBit() {
        check(width: 7)
        check(width: 300)
    }

    private func check(width: Int) {
        var rng = SeededGenerator(seed: 5)
        let rowsInBlock = 13, front = 11, back = 3
        let count = front + rowsInBlock * width + back
        var dense = RMSprop(count: count)
        var sparse = RMSprop(count: count)
        var wDense = (0..<count).map { _ in Float(rng.nextUnit() - 0.5) }
        var wSparse = wDense
        for step in 0..<60 {
            // A random set of rows has a gradient; all others are zero.
            var touched: [Int32] = []
            var g = [Float](repeating: 0, count: count)
            for k in 0..<front { g[k] = Float(rng.nextUnit() - 0.5) }
            for k in (count - back)..<count {
                g[k] = Float(rng.nextUnit() - 0.5)
            }
            for r in 0..<rowsInBlock where rng.next() % 4 == 0 {
                touched.append(Int32(r))
                for j in 0..<width {
                    // Some steps use tiny gradients so velocities reach
                    // the subnormal range and decay to zero.
                    let scale: Float = step % 7 == 0 ? 1e-20 : 1
                    g[front + r * width + j] =
                        Float(rng.nextUnit() - 0.5) * scale
                }
            }
            touched.shuffle(using: &rng)
            dense.apply(to: &wDense, gradients: g)
            // The sparse form gets the rows compact, in the list's order,
            // and a gradient buffer whose block holds garbage it must not
            // read.
            let compact = touched.flatMap { r in
                g[(front + Int(r) * width)..<(front + Int(r + 1) * width)]
            }
            var unread = g
            for k in front..<(count - back) { unread[k] = .nan }
            touched.withUnsafeBufferPointer { rows in
                sparse.applySparse(
                    to: &wSparse, gradients: unread, blockOffset: front,
                    rowWidth: width, rowCount: rowsInBlock, rows: rows,
                    rowGradients: compact)
            }
            XCTAssertEqual(
                wDense.map(\.bitPattern), wSparse.map(\.bitPattern),
                "weights after step \(step)")
            XCTAssertEqual(
                dense.savedVelocity().map(\.bitPattern),
                sparse.savedVelocity().map(\.bitPattern),
                "velocity after step \(step)")
        }
        XCTAssertEqual(dense.iterations, sparse.iterations)
        // A long idle stretch: a row untouched for 400 steps decays to the
        // same bits (including to zero) as 400 dense steps give.
        let g = [Float](repeating: 0, count: count)
        for _ in 0..<400 {
            dense.apply(to: &wDense, gradients: g)
            [Int32]().withUnsafeBufferPointer { rows in
                sparse.applySparse(
                    to: &wSparse, gradients: g, blockOffset: front,
                    rowWidth: width, rowCount: rowsInBlock, rows: rows,
                    rowGradients: [])
            }
        }
        XCTAssertEqual(
            dense.savedVelocity().map(\.bitPattern),
            sparse.savedVelocity().map(\.bitPattern))
        XCTAssertEqual(wDense.map(\.bitPattern), wSparse.map(\.bitPattern))
        // Then every row at once, after 400 pending decays that the
        // update applies in its own pass, with the updated rows copied
        // out as well: the same bits again, and the copies are the rows.
        var last = [Float](repeating: 0, count: count)
        for k in 0..<count { last[k] = Float(rng.nextUnit() - 0.5) }
        dense.apply(to: &wDense, gradients: last)
        let all = (0..<Int32(rowsInBlock)).reversed().map { $0 }
        var copies = [Float](repeating: .nan, count: rowsInBlock * width)
        all.withUnsafeBufferPointer { rows in
            last.withUnsafeBufferPointer { g in
                copies.withUnsafeMutableBufferPointer { out in
                    sparse.applySparse(
                        to: &wSparse, gradients: last, blockOffset: front,
                        rowWidth: width, rowCount: rowsInBlock, rows: rows,
                        rowGradient: {
                            g.baseAddress! + front + Int(rows[$0]) * width
                        },
                        rowCopy: { out.baseAddress! + $0 * width })
                }
            }
        }
        XCTAssertEqual(
            dense.savedVelocity().map(\.bitPattern),
            sparse.savedVelocity().map(\.bitPattern))
        XCTAssertEqual(wDense.map(\.bitPattern), wSparse.map(\.bitPattern))
        for (k, row) in all.enumerated() {
            let start = front + Int(row) * width
            XCTAssertEqual(
                Array(copies[(k * width)..<((k + 1) * width)]).map(
                    \.bitPattern),
                Array(wSparse[start..<(start + width)]).map(\.bitPattern),
                "copy of row \(row)")
        }
    }
}

/// Inference with the embedding folded into the input projection gives
/// the same bits as the plain forward pass.
final class FrozenProjectionTests: XCTestCase {
    func testFrozenForwardIsBitIdentical() {
        var rng = SeededGenerator(seed: 77)
        for (units, width) in [(4, 8), (17, 33), (32, 64)] {
            let config = ModelConfig(
                vocabularySize: 97, embeddingWidth: width, sequenceLength: 6,
                lstmUnits: units, auxFeatures: 3, denseUnits: 5)
            let model = HeadlineModel(config: config)
            Initializers.kerasDefaults(
                &model.parameters, layout: model.layout, seed: 3)
            var batch = Batch(capacity: 9, sequenceLength: 6, auxFeatures: 3)
            for r in 0..<9 {
                // Front padding of every length 0...6 (6: all padding),
                // and 0 ids inside the text too.
                let lead = r < 7 ? r : Int(rng.next() % 7)
                let ids = (0..<6).map { s in
                    s < lead ? 0 : Int32(rng.next() % 97)
                }
                let aux = (0..<3).map { _ in Float(rng.nextUnit()) }
                ids.withUnsafeBufferPointer { i in
                    aux.withUnsafeBufferPointer { x in
                        batch.append(ids: i, aux: x, label: 1)
                    }
                }
            }
            model.forward(batch)
            let plain = (0..<9).map { model.logits($0) }
            let plainState = model.lstmOutput()
            model.freezeInputProjection()
            XCTAssertTrue(model.isFrozen)
            model.forward(batch)
            let frozen = (0..<9).map { model.logits($0) }
            XCTAssertEqual(
                plainState.map(\.bitPattern),
                model.lstmOutput().map(\.bitPattern))
            XCTAssertEqual(
                plain.map { [$0.main.bitPattern, $0.aux.bitPattern] },
                frozen.map { [$0.main.bitPattern, $0.aux.bitPattern] },
                "U=\(units) E=\(width)")
            model.thaw()
            XCTAssertFalse(model.isFrozen)
        }
    }
}

/// The compact embedding gradient left in memory the caller provides is
/// the one the model's own scratch gets, bit for bit, and a buffer too
/// small for a batch's rows is not used.
final class EmbeddingGradientOutputTests: XCTestCase {
    func testRowsInTheCallersMemory() {
        var rng = SeededGenerator(seed: 5)
        let config = ModelConfig(
            vocabularySize: 30, embeddingWidth: 7, sequenceLength: 5,
            lstmUnits: 4, auxFeatures: 2, denseUnits: 3)
        let model = HeadlineModel(config: config)
        Initializers.kerasDefaults(
            &model.parameters, layout: model.layout, seed: 9)
        model.scattersEmbeddingGradient = false
        let batch = RandomBatch(config, rows: 6, rng: &rng) { rng in
            Float(rng.next() % 2)
        }.batch
        func pass() -> (
            rows: [Int32], gradients: [Float], at: UnsafePointer<Float>?
        ) {
            model.zeroGradients()
            model.forward(batch)
            model.backward(
                labels: batch.labels, mainWeight: 1, auxWeight: 0.2,
                scale: 1 / 6)
            let rows = model.embeddingRowGradients
            return (
                Array(model.touchedEmbeddingRows), Array(rows),
                rows.baseAddress
            )
        }
        let own = pass()
        let width = config.embeddingWidth
        XCTAssertEqual(own.gradients.count, own.rows.count * width)
        XCTAssertTrue(own.gradients.contains { $0 != 0 })
        let denseBefore = model.gradients
        for room in [own.gradients.count, own.gradients.count + 50] {
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(
                capacity: room)
            defer { buffer.deallocate() }
            buffer.initialize(repeating: .nan)
            model.embeddingGradientOutput = buffer
            let given = pass()
            XCTAssertEqual(given.at, UnsafePointer(buffer.baseAddress!))
            XCTAssertEqual(given.rows, own.rows)
            XCTAssertEqual(
                given.gradients.map(\.bitPattern),
                own.gradients.map(\.bitPattern))
            XCTAssertEqual(
                model.gradients.map(\.bitPattern), denseBefore.map(\.bitPattern)
            )
        }
        let small = UnsafeMutableBufferPointer<Float>.allocate(
            capacity: own.gradients.count - 1)
        defer { small.deallocate() }
        small.initialize(repeating: .nan)
        model.embeddingGradientOutput = small
        let fallback = pass()
        XCTAssertNotEqual(fallback.at, UnsafePointer(small.baseAddress!))
        XCTAssertEqual(
            fallback.gradients.map(\.bitPattern),
            own.gradients.map(\.bitPattern))
        XCTAssertTrue(small.allSatisfy(\.isNaN), "the small buffer was written")
        model.embeddingGradientOutput = nil
    }
}
