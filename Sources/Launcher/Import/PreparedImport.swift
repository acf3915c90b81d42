import Foundation
import Network

/// An earlier import, loaded from its prepare.json and the vocabulary.txt
/// beside it, to turn new CSV files into model inputs the same way.
///
/// `transform` applies the same columns, tokenizer, vocabulary, sequence
/// length, time format and offset, link rule, feature scaling and label
/// threshold. It does not apply the choices that only shape a training set
/// (deduplication, dropping empty texts, shuffling, the validation split):
/// every row of the new file is transformed, in file order, and a row whose
/// text has no words becomes a sequence of padding.
struct PreparedImport {
    let record: PrepareRecord
    let vocabulary: Vocabulary
    let features: FeatureSpec
    /// The path of the prepare.json, for messages.
    let recordPath: String

    var sequenceLength: Int { record.sequenceLength }
    var featureCount: Int { record.featureNames.count }

    /// Loads the prepare.json at `path` and the vocabulary file beside it.
    init(prepareJSON path: String) throws {
        let record = try PrepareRecord.read(path: path)
        let directory = (path as NSString).deletingLastPathComponent
        let vocabularyPath =
            (directory.isEmpty ? "." : directory) + "/" + record.vocabularyFile
        let vocabulary = try Vocabulary.read(path: vocabularyPath)
        if vocabulary.words.count != record.vocabularyWords
            || vocabulary.words.count > record.vocabSize - 2
        {
            throw ImportError(
                file: vocabularyPath,
                "holds \(vocabulary.words.count) words, but \(path) says "
                    + "vocabulary_words \(record.vocabularyWords) with vocab_size "
                    + "\(record.vocabSize)")
        }
        var features = FeatureSpec()
        features.timeColumn = record.timeColumn
        if record.timeColumn != nil {
            do {
                features.timeFormat = try TimeFormat.from(
                    option: record.timeFormat ?? "iso8601")
            } catch {
                throw ImportError(file: path, "time_format: \(error)")
            }
        }
        features.timezoneOffsetHours = record.timezoneOffsetHours
        features.linkVideoColumn = record.linkVideoColumn
        features.auxColumns = record.auxColumns
        if features.names != record.featureNames
            || record.featureScaling.map(\.name) != record.featureNames
        {
            throw ImportError(
                file: path,
                "feature_names \(record.featureNames) do not match the columns it names "
                    + "(expected \(features.names)) or feature_scaling")
        }
        self.record = record
        self.vocabulary = vocabulary
        self.features = features
        self.recordPath = path
    }

    /// Loads `directory/prepare.json`.
    init(directory: String) throws {
        try self.init(prepareJSON: directory + "/" + PreparedFolder.record)
    }

    /// The model inputs for every row of the CSV at `path`: word ids
    /// (rows x sequenceLength), scaled aux features (rows x featureCount),
    /// the texts as read, and the labels when the file has the label column.
    func transform(csv path: String) throws -> (
        ids: [Int32], aux: [Float], texts: [String], labels: [Float]?, rows: Int
    ) {
        let table = try CSVTable.read(path: path)
        guard table.rowCount > 0 else {
            throw ImportError(
                file: path, "the file has a header but no data rows")
        }
        let textIndex = try table.columnIndex(
            record.textColumn, option: "text-column")
        let rows = Array(0..<table.rowCount)
        let raw = try features.rawFeatures(table, rows: rows)
        let aux = FeatureScaling.apply(record.featureScaling, to: raw)
        var ids: [Int32] = []
        ids.reserveCapacity(rows.count * sequenceLength)
        var texts: [String] = []
        texts.reserveCapacity(rows.count)
        for row in rows {
            let text = table.field(row, textIndex)
            texts.append(text)
            ids += vocabulary.encode(
                Tokenizer.words(text), length: sequenceLength)
        }
        var labels: [Float]?
        if let labelIndex = table.header.firstIndex(of: record.labelColumn) {
            labels = try rows.map { row in
                let text = table.field(row, labelIndex)
                guard let value = parseDecimal(text) else {
                    throw table.error(
                        row: row, column: labelIndex,
                        "expected a finite number for the label, got "
                            + quotedForMessage(text))
                }
                return value > record.labelThresholdValue ? 1 : 0
            }
        }
        return (ids, aux, texts, labels, rows.count)
    }
}

/// Writes predictions as CSV (`text,main_output,aux_output`, CRLF line
/// ends, RFC 4180 quoting) atomically to `path`; one line per text.
func writePredictionsCSV(
    texts: [String], main: [Float], aux: [Float], to path: String
) throws {
    guard main.count == texts.count, aux.count == texts.count else {
        throw ImportError(
            file: path,
            "cannot write predictions: \(texts.count) texts but \(main.count) main "
                + "and \(aux.count) aux outputs")
    }
    var text = "text,main_output,aux_output\r\n"
    for i in texts.indices {
        text += csvField(texts[i]) + ",\(main[i]),\(aux[i])\r\n"
    }
    try writeFileAtomically(Array(text.utf8), to: path)
}

/// A field as RFC 4180 writes it: enclosed in double quotes, with inner
/// quotes doubled, when it holds a comma, quote or line break, or starts
/// or ends with a space (which some readers would otherwise trim).
func csvField(_ value: String) -> String {
    let needsQuotes =
        value.utf8.contains {
            $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D
        }
        || value.hasPrefix(" ") || value.hasSuffix(" ")
    guard needsQuotes else { return value }
    return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
