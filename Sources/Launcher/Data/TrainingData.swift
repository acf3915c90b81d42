import Foundation
import Network

/// A bad input file: the message names the file and what was expected.
struct DataError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// The rows of a training folder, held in memory and already checked.
///
/// Ids are [N, T] int32, aux [N, A] float32, labels [N] float32; the checks
/// happen once, at load, so the training loop can trust every value.
struct TrainingData {
    var rows: Int
    var sequenceLength: Int
    var auxFeatures: Int
    var ids: [Int32]
    var aux: [Float]
    /// Nil for a folder without `labels.npy` (allowed for prediction).
    var labels: [Float]?

    /// Loads `main_input.npy`, `aux_input.npy` and, when `needLabels` or
    /// present, `labels.npy` from `folder`, checking each against the
    /// vocabulary size `vocabularySize`.
    static func load(
        folder: String, vocabularySize: Int, needLabels: Bool
    ) throws -> TrainingData {
        var isDirectory: ObjCBool = false
        guard
            FileManager.default.fileExists(
                atPath: folder, isDirectory: &isDirectory),
            isDirectory.boolValue
        else {
            throw DataError(
                "\(folder): not a folder; expected a folder holding "
                    + "main_input.npy, aux_input.npy and labels.npy")
        }
        let idsPath = (folder as NSString).appendingPathComponent(
            "main_input.npy")
        let auxPath = (folder as NSString).appendingPathComponent(
            "aux_input.npy")
        let labelsPath = (folder as NSString).appendingPathComponent(
            "labels.npy")

        let idsArray = try NPY.read(contentsOf: idsPath)
        guard idsArray.shape.count == 2 else {
            throw DataError(
                "\(idsPath): expected a 2-D array [N, T] of token ids, "
                    + "got shape \(idsArray.shape)")
        }
        let n = idsArray.shape[0], t = idsArray.shape[1]
        guard n > 0 else {
            throw DataError("\(idsPath): the data set is empty (0 rows)")
        }
        guard t > 0 else {
            throw DataError("\(idsPath): rows have no token ids (T = 0)")
        }
        func outside(_ k: Int, _ id: Int64) -> DataError {
            DataError(
                "\(idsPath): row \(k / t), column \(k % t) (0-based) "
                    + "holds token id \(id), outside the vocabulary: "
                    + "expected 0 <= id < V = \(vocabularySize)")
        }
        let ids: [Int32]
        switch idsArray.storage {
        case .int32(let values):
            // Kept as read: no wider copy of the largest input.
            if let k = values.firstIndex(where: {
                $0 < 0 || Int($0) >= vocabularySize
            }) {
                throw outside(k, Int64(values[k]))
            }
            ids = values
        case .int64(let values):
            if let k = values.firstIndex(where: {
                $0 < 0 || $0 >= Int64(vocabularySize)
            }) {
                throw outside(k, values[k])
            }
            ids = values.map { Int32($0) }
        default:
            throw DataError(
                "\(idsPath): expected integer token ids (int32 or int64), "
                    + "got \(idsArray.elementType.rawValue)")
        }

        let auxArray = try NPY.read(contentsOf: auxPath)
        guard auxArray.shape.count == 2 else {
            throw DataError(
                "\(auxPath): expected a 2-D array [N, A] of aux features, "
                    + "got shape \(auxArray.shape)")
        }
        guard auxArray.shape[0] == n else {
            throw DataError(
                "\(auxPath): has \(auxArray.shape[0]) rows but "
                    + "main_input.npy has \(n); every file needs one row "
                    + "per sample")
        }
        let a = auxArray.shape[1]
        let aux = auxArray.floats()
        if let bad = aux.firstIndex(where: { !$0.isFinite }), a > 0 {
            throw DataError(
                "\(auxPath): row \(bad / a), column \(bad % a) (0-based) "
                    + "is \(aux[bad]); expected a finite number")
        }

        var labels: [Float]?
        if needLabels || FileManager.default.fileExists(atPath: labelsPath) {
            let labelArray = try NPY.read(contentsOf: labelsPath)
            let shape = labelArray.shape
            guard shape.count == 1 || (shape.count == 2 && shape[1] == 1)
            else {
                throw DataError(
                    "\(labelsPath): expected shape [N] or [N, 1], "
                        + "got \(shape)")
            }
            guard shape[0] == n else {
                throw DataError(
                    "\(labelsPath): has \(shape[0]) rows but "
                        + "main_input.npy has \(n); every file needs one "
                        + "row per sample")
            }
            let values = labelArray.floats()
            if let bad = values.firstIndex(where: {
                !($0 >= 0 && $0 <= 1)
            }) {
                throw DataError(
                    "\(labelsPath): row \(bad) (0-based) is \(values[bad]); "
                        + "expected a label in [0, 1]")
            }
            labels = values
        }
        return TrainingData(
            rows: n, sequenceLength: t, auxFeatures: a, ids: ids, aux: aux,
            labels: labels)
    }

    /// Rows `range` of this data as its own data set.
    func slice(_ range: Range<Int>) -> TrainingData {
        let t = sequenceLength, a = auxFeatures
        return TrainingData(
            rows: range.count, sequenceLength: t, auxFeatures: a,
            ids: Array(ids[(range.lowerBound * t)..<(range.upperBound * t)]),
            aux: Array(aux[(range.lowerBound * a)..<(range.upperBound * a)]),
            labels: labels.map { Array($0[range]) })
    }

    /// Appends row `row` to `batch`.
    func append(row: Int, to batch: inout Batch) {
        let t = sequenceLength, a = auxFeatures
        ids.withUnsafeBufferPointer { i in
            aux.withUnsafeBufferPointer { x in
                batch.append(
                    ids: UnsafeBufferPointer(
                        rebasing: i[(row * t)..<(row * t + t)]),
                    aux: UnsafeBufferPointer(
                        rebasing: x[(row * a)..<(row * a + a)]),
                    label: labels?[row] ?? 0)
            }
        }
    }
}
