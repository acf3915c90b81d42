import Network

/// Keras' `AUC()` metric with its defaults: ROC curve, 200 thresholds
/// spread evenly over [0, 1], trapezoidal ("interpolation") summation.
///
/// Instead of 200 confusion matrices it keeps, per bucket, the summed
/// weight of positive and negative labels (a soft label y counts y
/// positive and 1 − y negative, as in Keras). Buckets are plain sums, so
/// the parts of all ranks combine with one all-reduce.
struct AUCAccumulator {
    static let thresholds = 200
    /// Positive weight per bucket, then negative weight per bucket.
    var buckets = [Double](repeating: 0, count: 2 * thresholds)

    /// Bucket k holds predictions that exceed exactly the thresholds
    /// 0..<k: threshold 0 is −ε, thresholds i = 1...198 are i / 199 and
    /// threshold 199 is 1 + ε.
    static func bucket(_ p: Float) -> Int {
        guard p > -1e-7 else { return 0 }
        let interior = Int((Double(p) * 199).rounded(.up)) - 1
        return 1 + min(max(interior, 0), 198)
    }

    mutating func add(prediction p: Float, label y: Float) {
        let k = AUCAccumulator.bucket(p)
        buckets[k] += Double(y)
        buckets[AUCAccumulator.thresholds + k] += Double(1 - y)
    }

    /// The area under the ROC curve; 0 when a class is absent (Keras
    /// divides with divide_no_nan), never NaN.
    var value: Double {
        let n = AUCAccumulator.thresholds
        // tp[i], fp[i]: weight above threshold i.
        var tp = [Double](repeating: 0, count: n)
        var fp = [Double](repeating: 0, count: n)
        var pos = 0.0, neg = 0.0
        for k in stride(from: n, through: 0, by: -1) {
            if k < n {
                pos += buckets[k]
                neg += buckets[n + k]
            }
            if k > 0 {
                tp[k - 1] = pos
                fp[k - 1] = neg
            }
        }
        // pos and neg now hold the totals over all buckets.
        func ratio(_ a: Double, _ b: Double) -> Double { b == 0 ? 0 : a / b }
        var area = 0.0
        for i in 0..<(n - 1) {
            let x0 = ratio(fp[i], neg), x1 = ratio(fp[i + 1], neg)
            let y0 = ratio(tp[i], pos), y1 = ratio(tp[i + 1], pos)
            area += (x0 - x1) * (y0 + y1) / 2
        }
        return area
    }
}

/// Loss, accuracy and AUC sums of one pass over some rows, for both
/// outputs, in a form that adds across ranks.
struct EpochTotals {
    var sums = StepSums()
    var mainAUC = AUCAccumulator()
    var auxAUC = AUCAccumulator()

    /// Adds the rows of the model's last forward pass.
    mutating func add(model: HeadlineModel, labels: [Float]) {
        sums += model.lossSums(labels: labels)
        for r in 0..<model.lastBatchCount {
            mainAUC.add(prediction: model.mainProbability(r), label: labels[r])
            auxAUC.add(prediction: model.auxProbability(r), label: labels[r])
        }
    }

    /// Everything as one array for an all-reduce, and back.
    var packed: [Double] { sums.packed + mainAUC.buckets + auxAUC.buckets }

    init() {}

    /// Zero sums again, keeping the buckets' storage (a step reuses one).
    mutating func reset() {
        sums = StepSums()
        for k in mainAUC.buckets.indices {
            mainAUC.buckets[k] = 0
            auxAUC.buckets[k] = 0
        }
    }

    init(packed: [Double]) {
        let s = StepSums.packedCount, b = 2 * AUCAccumulator.thresholds
        sums = StepSums(packed: packed[0..<s])
        mainAUC.buckets = Array(packed[s..<(s + b)])
        auxAUC.buckets = Array(packed[(s + b)..<(s + 2 * b)])
    }

    /// Keras' History names and values; `prefix` is "" or "val_".
    func figures(
        prefix: String, mainWeight: Double, auxWeight: Double
    ) -> [(String, Double)] {
        let n = max(sums.rows, 1)
        let main = sums.mainLoss / n, aux = sums.auxLoss / n
        return [
            (prefix + "loss", mainWeight * main + auxWeight * aux),
            (prefix + "main_output_loss", main),
            (prefix + "aux_output_loss", aux),
            (prefix + "main_output_accuracy", sums.mainCorrect / n),
            (prefix + "aux_output_accuracy", sums.auxCorrect / n),
            (prefix + "main_output_auc", mainAUC.value),
            (prefix + "aux_output_auc", auxAUC.value),
        ]
    }
}
