import Foundation

/// The content of prepare.json: every choice an import made and every
/// statistic it computed, enough to apply the same import to new data
/// (see `PreparedImport`). Keys are snake_case and written sorted; values
/// that do not apply are written as null rather than left out.
struct PrepareRecord: Codable, Equatable {
    static let currentFormatVersion = 1

    var formatVersion = currentFormatVersion
    /// The CSV's file name (not its full path, so that two imports of the
    /// same data from different places give identical folders).
    var sourceFile: String
    var sourceColumns: [String]

    var textColumn: String
    var labelColumn: String
    /// As given: "median" or the number's text.
    var labelThreshold: String
    var labelThresholdValue: Double
    var labelRule = "label = 1 if value > label_threshold_value else 0"

    var timeColumn: String?
    /// "iso8601" or the strftime-style format; null without a time column.
    var timeFormat: String?
    var timezoneOffsetHours: Double
    var linkVideoColumn: String?
    var linkVideoRule =
        "1 if the URL contains 'facebook.com/' and '/videos/' (any case) else 0"
    var auxColumns: [String]

    var dedupeColumn: String?
    var dedupeLatestColumn: String?
    /// How the latest column was compared: "number", "time" or null.
    var dedupeLatestCompare: String?
    /// "none", "last occurrence" or "greatest dedupe_latest_column".
    var dedupeKeep: String
    var skipEmptyText: Bool

    var vocabSize: Int
    var vocabularyWords: Int
    var vocabularyFile = "vocabulary.txt"
    var vocabularyLayout =
        "one word per line in id order, the first line is id 2; id 0 = padding, id 1 = out of vocabulary"
    /// The --vocabulary file reused, or null when built from training rows.
    var vocabularyReusedFrom: String?
    var tokenizer =
        "lower-case; words are maximal runs of letters (with combining marks), decimal digits and apostrophes (' and U+2019); the vocab_size-2 most frequent training words get ids 2.., ties by first appearance"
    var sequenceLength: Int
    var padding = "pre"
    var truncating = "pre"

    var validationSplit: Double
    var validationRule =
        "the last rows are validation: training_rows = floor(rows * (1 - validation_split))"
    var shuffleSeed: Int?
    var shuffle: String

    var featureNames: [String]
    var featureScaling: [FeatureScaling]
    var scalingRule =
        "every feature, sin/cos included: (value - mean) / divisor, population statistics of the training rows, divisor = std or 1 when std = 0"
    var timeFeatureRule =
        "hour = hour of day 0..23, dow = day of week 0 = Monday .. 6 = Sunday, after adding timezone_offset_hours; sin/cos of 2*pi*hour/24 and 2*pi*dow/7"

    var rows: RowCounts
    var labels: LabelCounts
    var arrays: [String: ArrayInfo]

    struct RowCounts: Codable, Equatable {
        var inFile: Int
        var duplicatesDropped: Int
        var emptyTextDropped: Int
        var written: Int
        var training: Int
        var validation: Int

        enum CodingKeys: String, CodingKey {
            case inFile = "in_file"
            case duplicatesDropped = "duplicates_dropped"
            case emptyTextDropped = "empty_text_dropped"
            case written
            case training
            case validation
        }
    }

    struct LabelCounts: Codable, Equatable {
        var trainingPositive: Int
        var trainingNegative: Int
        var validationPositive: Int
        var validationNegative: Int

        enum CodingKeys: String, CodingKey {
            case trainingPositive = "training_positive"
            case trainingNegative = "training_negative"
            case validationPositive = "validation_positive"
            case validationNegative = "validation_negative"
        }
    }

    struct ArrayInfo: Codable, Equatable {
        var dtype: String
        var shape: [Int]
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case sourceFile = "source_file"
        case sourceColumns = "source_columns"
        case textColumn = "text_column"
        case labelColumn = "label_column"
        case labelThreshold = "label_threshold"
        case labelThresholdValue = "label_threshold_value"
        case labelRule = "label_rule"
        case timeColumn = "time_column"
        case timeFormat = "time_format"
        case timezoneOffsetHours = "timezone_offset_hours"
        case linkVideoColumn = "link_video_column"
        case linkVideoRule = "link_video_rule"
        case auxColumns = "aux_columns"
        case dedupeColumn = "dedupe_column"
        case dedupeLatestColumn = "dedupe_latest_column"
        case dedupeLatestCompare = "dedupe_latest_compare"
        case dedupeKeep = "dedupe_keep"
        case skipEmptyText = "skip_empty_text"
        case vocabSize = "vocab_size"
        case vocabularyWords = "vocabulary_words"
        case vocabularyFile = "vocabulary_file"
        case vocabularyLayout = "vocabulary_layout"
        case vocabularyReusedFrom = "vocabulary_reused_from"
        case tokenizer
        case sequenceLength = "sequence_length"
        case padding
        case truncating
        case validationSplit = "validation_split"
        case validationRule = "validation_rule"
        case shuffleSeed = "shuffle_seed"
        case shuffle
        case featureNames = "feature_names"
        case featureScaling = "feature_scaling"
        case scalingRule = "scaling_rule"
        case timeFeatureRule = "time_feature_rule"
        case rows
        case labels
        case arrays
    }

    // Written by hand only so that absent values appear as null.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(sourceFile, forKey: .sourceFile)
        try c.encode(sourceColumns, forKey: .sourceColumns)
        try c.encode(textColumn, forKey: .textColumn)
        try c.encode(labelColumn, forKey: .labelColumn)
        try c.encode(labelThreshold, forKey: .labelThreshold)
        try c.encode(labelThresholdValue, forKey: .labelThresholdValue)
        try c.encode(labelRule, forKey: .labelRule)
        try c.encode(timeColumn, forKey: .timeColumn)
        try c.encode(timeFormat, forKey: .timeFormat)
        try c.encode(timezoneOffsetHours, forKey: .timezoneOffsetHours)
        try c.encode(linkVideoColumn, forKey: .linkVideoColumn)
        try c.encode(linkVideoRule, forKey: .linkVideoRule)
        try c.encode(auxColumns, forKey: .auxColumns)
        try c.encode(dedupeColumn, forKey: .dedupeColumn)
        try c.encode(dedupeLatestColumn, forKey: .dedupeLatestColumn)
        try c.encode(dedupeLatestCompare, forKey: .dedupeLatestCompare)
        try c.encode(dedupeKeep, forKey: .dedupeKeep)
        try c.encode(skipEmptyText, forKey: .skipEmptyText)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(vocabularyWords, forKey: .vocabularyWords)
        try c.encode(vocabularyFile, forKey: .vocabularyFile)
        try c.encode(vocabularyLayout, forKey: .vocabularyLayout)
        try c.encode(vocabularyReusedFrom, forKey: .vocabularyReusedFrom)
        try c.encode(tokenizer, forKey: .tokenizer)
        try c.encode(sequenceLength, forKey: .sequenceLength)
        try c.encode(padding, forKey: .padding)
        try c.encode(truncating, forKey: .truncating)
        try c.encode(validationSplit, forKey: .validationSplit)
        try c.encode(validationRule, forKey: .validationRule)
        try c.encode(shuffleSeed, forKey: .shuffleSeed)
        try c.encode(shuffle, forKey: .shuffle)
        try c.encode(featureNames, forKey: .featureNames)
        try c.encode(featureScaling, forKey: .featureScaling)
        try c.encode(scalingRule, forKey: .scalingRule)
        try c.encode(timeFeatureRule, forKey: .timeFeatureRule)
        try c.encode(rows, forKey: .rows)
        try c.encode(labels, forKey: .labels)
        try c.encode(arrays, forKey: .arrays)
    }

    /// The JSON text, pretty-printed with sorted keys and a final newline.
    func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [
            .prettyPrinted, .sortedKeys, .withoutEscapingSlashes,
        ]
        return [UInt8](try encoder.encode(self)) + [0x0A]
    }

    /// Reads a prepare.json.
    static func read(path: String) throws -> PrepareRecord {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImportError(file: path, "cannot read the prepare.json file")
        }
        return try decode(bytes: [UInt8](data), file: path)
    }

    /// Parses the bytes of a prepare.json as `read(path:)` does; `file` is
    /// only used in messages. The fuzz harness drives this directly.
    static func decode(bytes: [UInt8], file path: String) throws
        -> PrepareRecord
    {
        let record: PrepareRecord
        do {
            record = try JSONDecoder().decode(
                PrepareRecord.self, from: Data(bytes))
        } catch {
            throw ImportError(
                file: path, "not a prepare.json written by prepare: \(error)")
        }
        guard record.formatVersion == currentFormatVersion else {
            throw ImportError(
                file: path,
                "format_version \(record.formatVersion) is not supported "
                    + "(expected \(currentFormatVersion))")
        }
        // The values the users of a record compute with, held to what
        // prepare itself accepts: out of range, they trap there (an array
        // of sequence_length ids, vocab_size - 2, hours x 3600 as Int64).
        func outOfRange(_ key: String, _ value: Any, _ expected: String)
            -> ImportError
        {
            ImportError(
                file: path,
                "\(key) \(value) is out of range; expected \(expected)")
        }
        if !vocabSizeRange.contains(record.vocabSize) {
            throw outOfRange(
                "vocab_size", record.vocabSize, "\(vocabSizeRange)")
        }
        if !(0...record.vocabSize - 2).contains(record.vocabularyWords) {
            throw outOfRange(
                "vocabulary_words", record.vocabularyWords, "0...vocab_size - 2"
            )
        }
        if !sequenceLengthRange.contains(record.sequenceLength) {
            throw outOfRange(
                "sequence_length", record.sequenceLength,
                "\(sequenceLengthRange)")
        }
        if !(record.timezoneOffsetHours.magnitude <= maxTimezoneOffsetHours) {
            throw outOfRange(
                "timezone_offset_hours", record.timezoneOffsetHours,
                "a number of hours in -24...24")
        }
        return record
    }

    /// What prepare accepts for --vocab-size, --sequence-length and
    /// --timezone-offset, and so all that a prepare.json may hold.
    static let vocabSizeRange = 2...100_000_000
    static let sequenceLengthRange = 1...1_000_000
    static let maxTimezoneOffsetHours = 24.0
}
