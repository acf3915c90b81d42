import Foundation

/// The arrays and record of one import, in memory, before they are written.
struct PreparedData {
    var record: PrepareRecord
    var vocabulary: Vocabulary
    /// int32 [N, T], row-major.
    var ids: [Int32]
    /// float32 [N, A], row-major.
    var aux: [Float]
    /// float32 [N, 1].
    var labels: [Float]
}

/// Reads the CSV and computes everything `prepare` writes.
///
/// The steps, in order: parse the CSV; deduplicate (keeping one row per
/// key, at that row's own place in file order); split the texts into words
/// and drop or refuse rows without words; shuffle when a seed is given;
/// split off the last `validationSplit` fraction as validation rows; then
/// compute the vocabulary, the median threshold and the feature scaling
/// from the training rows only, and apply them to all rows.
func buildPreparedData(_ options: PrepareOptions) throws -> PreparedData {
    let table = try CSVTable.read(path: options.csv)
    let file = options.csv
    guard table.rowCount > 0 else {
        throw ImportError(file: file, "the file has a header but no data rows")
    }
    // Look every column up first, so that a misspelt one is reported before
    // any row is examined.
    let textIndex = try table.columnIndex(
        options.textColumn, option: "text-column")
    let labelIndex = try table.columnIndex(
        options.labelColumn, option: "label-column")
    _ = try options.features.rawFeatures(table, rows: [])

    // Deduplication.
    var rows = Array(0..<table.rowCount)
    var latestCompare: String?
    if let dedupe = options.dedupeColumn {
        let keyIndex = try table.columnIndex(dedupe, option: "dedupe-column")
        let latestIndex = try options.dedupeLatestColumn.map {
            try table.columnIndex($0, option: "dedupe-latest-column")
        }
        let result = try deduplicate(
            table, keyColumn: keyIndex, latestColumn: latestIndex)
        rows = result.rows
        latestCompare = result.compare
    }
    let duplicatesDropped = table.rowCount - rows.count

    // Words, and rows without any.
    var words: [[String]] = []
    var withText: [Int] = []
    words.reserveCapacity(rows.count)
    for row in rows {
        let rowWords = Tokenizer.words(table.field(row, textIndex))
        if rowWords.isEmpty {
            if options.skipEmptyText { continue }
            throw table.error(
                row: row, column: textIndex,
                "the text has no words (use --skip-empty-text to drop such rows), got "
                    + quotedForMessage(table.field(row, textIndex)))
        }
        words.append(rowWords)
        withText.append(row)
    }
    let emptyDropped = rows.count - withText.count
    guard !withText.isEmpty else {
        throw ImportError(
            file: file,
            "no rows left: all \(rows.count) rows have texts without words")
    }

    // Order and split.
    var order = Array(withText.indices)
    if let seed = options.shuffleSeed {
        order = seededShuffle(order, seed: UInt64(seed))
    }
    rows = order.map { withText[$0] }
    words = order.map { words[$0] }
    let count = rows.count
    let training = Int(Double(count) * (1 - options.validationSplit))
    guard training > 0 else {
        throw UsageError(
            "--validation-split \(options.validationSplit) leaves no training "
                + "rows out of \(count)")
    }

    // Labels.
    var values: [Double] = []
    values.reserveCapacity(count)
    for row in rows {
        let text = table.field(row, labelIndex)
        guard let value = parseDecimal(text) else {
            throw table.error(
                row: row, column: labelIndex,
                "expected a finite number for the label, got "
                    + quotedForMessage(text))
        }
        values.append(value)
    }
    let threshold: Double
    switch options.labelThreshold {
    case .median: threshold = median(Array(values[..<training]))
    case .value(let v): threshold = v
    }
    let labels: [Float] = values.map { $0 > threshold ? 1 : 0 }
    let trainingPositive = labels[..<training].reduce(0) { $0 + Int($1) }
    let validationPositive = labels[training...].reduce(0) { $0 + Int($1) }

    // Auxiliary features.
    let raw = try options.features.rawFeatures(table, rows: rows)
    let names = options.features.names
    let scaling = FeatureScaling.fit(
        raw: raw, names: names, trainingRows: training)
    let aux = FeatureScaling.apply(scaling, to: raw)

    // Words to ids.
    let vocabulary: Vocabulary
    if let path = options.vocabularyFile {
        vocabulary = try loadVocabulary(path: path, size: options.vocabSize)
    } else {
        vocabulary = Vocabulary.build(
            from: words[..<training], size: options.vocabSize)
    }
    let length = options.sequenceLength
    var ids: [Int32] = []
    ids.reserveCapacity(count * length)
    for rowWords in words {
        ids += vocabulary.encode(rowWords, length: length)
    }

    let features = options.features
    let record = PrepareRecord(
        sourceFile: (options.csv as NSString).lastPathComponent,
        sourceColumns: table.header,
        textColumn: options.textColumn,
        labelColumn: options.labelColumn,
        labelThreshold: options.labelThresholdText,
        labelThresholdValue: threshold,
        timeColumn: features.timeColumn,
        timeFormat: features.timeColumn == nil
            ? nil : features.timeFormat.recordedName,
        timezoneOffsetHours: features.timezoneOffsetHours,
        linkVideoColumn: features.linkVideoColumn,
        auxColumns: features.auxColumns,
        dedupeColumn: options.dedupeColumn,
        dedupeLatestColumn: options.dedupeLatestColumn,
        dedupeLatestCompare: latestCompare,
        dedupeKeep: options.dedupeColumn == nil
            ? "none"
            : options.dedupeLatestColumn == nil
                ? "last occurrence in file order"
                : "greatest dedupe_latest_column (the later row on a tie)",
        skipEmptyText: options.skipEmptyText,
        vocabSize: options.vocabSize,
        vocabularyWords: vocabulary.words.count,
        vocabularyReusedFrom: options.vocabularyFile,
        sequenceLength: length,
        validationSplit: options.validationSplit,
        shuffleSeed: options.shuffleSeed,
        shuffle: shuffleDescription(seed: options.shuffleSeed),
        featureNames: names,
        featureScaling: scaling,
        rows: .init(
            inFile: table.rowCount, duplicatesDropped: duplicatesDropped,
            emptyTextDropped: emptyDropped, written: count, training: training,
            validation: count - training),
        labels: .init(
            trainingPositive: trainingPositive,
            trainingNegative: training - trainingPositive,
            validationPositive: validationPositive,
            validationNegative: count - training - validationPositive),
        arrays: [
            "main_input.npy": .init(dtype: "int32", shape: [count, length]),
            "aux_input.npy": .init(
                dtype: "float32", shape: [count, names.count]),
            "labels.npy": .init(dtype: "float32", shape: [count, 1]),
        ])
    return PreparedData(
        record: record, vocabulary: vocabulary, ids: ids, aux: aux,
        labels: labels)
}

/// One row per value of `keyColumn`, returned in file order. Without
/// `latestColumn` the last occurrence of each key is kept; with it, the
/// row whose value there is greatest (the later one on a tie). The latest
/// column is compared as numbers when its first value is a number, else as
/// ISO 8601 times; every value must then be of that kind.
func deduplicate(_ table: CSVTable, keyColumn: Int, latestColumn: Int?)
    throws -> (rows: [Int], compare: String?)
{
    enum Key: Comparable {
        case number(Double)
        case time(Timestamp)
    }
    var latest: [Key] = []
    var compare: String?
    if let latestColumn {
        let first = table.field(0, latestColumn)
        let asNumber = parseDecimal(first) != nil
        compare = asNumber ? "number" : "time"
        if !asNumber, TimeFormat.iso8601.parse(first) == nil {
            throw table.error(
                row: 0, column: latestColumn,
                "expected a number or an ISO 8601 time (to find the latest row), got "
                    + quotedForMessage(first))
        }
        latest.reserveCapacity(table.rowCount)
        for row in 0..<table.rowCount {
            let text = table.field(row, latestColumn)
            if asNumber, let value = parseDecimal(text) {
                latest.append(.number(value))
            } else if !asNumber, let time = TimeFormat.iso8601.parse(text) {
                latest.append(.time(time))
            } else {
                throw table.error(
                    row: row, column: latestColumn,
                    "expected "
                        + (asNumber
                            ? "a number"
                            : "an ISO 8601 time such as 2017-07-14 11:01:02.5")
                        + " like the first row's value, got "
                        + quotedForMessage(text))
            }
        }
    }
    var chosen: [String: Int] = [:]
    for row in 0..<table.rowCount {
        let key = table.field(row, keyColumn)
        if key.isEmpty {
            throw table.error(
                row: row, column: keyColumn, "empty value in the dedupe column")
        }
        if let previous = chosen[key], !latest.isEmpty,
            latest[row] < latest[previous]
        {
            continue
        }
        chosen[key] = row
    }
    return (chosen.values.sorted(), compare)
}

/// A vocabulary.txt given with --vocabulary, checked against `size`. Its
/// size is the vocab_size of the prepare.json beside it when there is one
/// (a vocabulary may hold fewer than size - 2 words), else its word count
/// plus 2 (padding and out of vocabulary).
func loadVocabulary(path: String, size: Int) throws -> Vocabulary {
    let vocabulary = try Vocabulary.read(path: path)
    let sibling = ((path as NSString).deletingLastPathComponent as NSString)
        .appendingPathComponent("prepare.json")
    let wordCount = vocabulary.words.count
    if FileManager.default.fileExists(atPath: sibling) {
        let record = try PrepareRecord.read(path: sibling)
        if record.vocabSize != size {
            throw ImportError(
                file: path,
                "this vocabulary has size \(record.vocabSize) (vocab_size in "
                    + "\(sibling)), but --vocab-size is \(size)")
        }
        if wordCount > size - 2 {
            throw ImportError(
                file: path,
                "holds \(wordCount) words, more than vocab_size - 2 = \(size - 2)"
            )
        }
    } else if wordCount + 2 != size {
        throw ImportError(
            file: path,
            "this vocabulary has size \(wordCount + 2) (\(wordCount) words + "
                + "padding + out of vocabulary), but --vocab-size is \(size)")
    }
    return vocabulary
}
