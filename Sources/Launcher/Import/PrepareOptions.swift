/// The `--label-threshold` choice.
enum LabelThreshold: Equatable {
    case median
    case value(Double)
}

/// Everything `prepare` was asked to do.
struct PrepareOptions {
    var csv: String
    var out: String
    var textColumn: String
    var labelColumn: String
    var labelThreshold: LabelThreshold
    /// The text of `--label-threshold`, recorded as given.
    var labelThresholdText: String
    var features = FeatureSpec()
    var dedupeColumn: String?
    var dedupeLatestColumn: String?
    var vocabSize = 10_000
    var sequenceLength = 100
    var validationSplit = 0.0
    var shuffleSeed: Int?
    var skipEmptyText = false
    var vocabularyFile: String?
    var overwrite = false

    init(
        csv: String, out: String, textColumn: String, labelColumn: String,
        labelThreshold: LabelThreshold
    ) {
        self.csv = csv
        self.out = out
        self.textColumn = textColumn
        self.labelColumn = labelColumn
        self.labelThreshold = labelThreshold
        switch labelThreshold {
        case .median: labelThresholdText = "median"
        case .value(let v): labelThresholdText = "\(v)"
        }
    }

    static let summary = """
        Reads a CSV of headlines and writes a training folder: main_input.npy \
        (int32 word ids [N, T]), aux_input.npy (float32 [N, A]), labels.npy \
        (float32 [N, 1]), vocabulary.txt and prepare.json.
        """

    static let specs: [OptionSpec] = [
        OptionSpec(
            "csv", value: "FILE", help: "the CSV file to read (required)"),
        OptionSpec("out", value: "DIR", help: "the folder to write (required)"),
        OptionSpec(
            "text-column", value: "NAME",
            help: "column with the headline text (required)"),
        OptionSpec(
            "label-column", value: "NAME",
            help: "numeric column the label comes from (required)"),
        OptionSpec(
            "label-threshold", value: "X|median",
            help:
                "label = 1 if value > X; median: of the training rows (required)"
        ),
        OptionSpec(
            "time-column", value: "NAME",
            help: "posting time: adds hour_sin, hour_cos, dow_sin, dow_cos"),
        OptionSpec(
            "time-format", value: "FMT",
            help:
                "strftime-style format of the time column (default: ISO 8601, no zone = UTC)"
        ),
        OptionSpec(
            "timezone-offset", value: "HOURS",
            help: "hours added to the times before hour/day are taken"),
        OptionSpec(
            "link-video-column", value: "NAME",
            help: "URL column: adds link_video (facebook.com video URL = 1)"),
        OptionSpec(
            "aux-columns", value: "A,B,...",
            help: "numeric columns added as features"),
        OptionSpec(
            "dedupe-column", value: "NAME",
            help: "keep one row per value of this column (the last one)"),
        OptionSpec(
            "dedupe-latest-column", value: "NAME",
            help:
                "with --dedupe-column: keep the row where this column is greatest"
        ),
        OptionSpec(
            "vocab-size", value: "V",
            help:
                "ids 0..V-1: padding, out of vocabulary, V-2 words (default 10000)"
        ),
        OptionSpec(
            "sequence-length", value: "T",
            help: "words per row, cut/padded at the front (default 100)"),
        OptionSpec(
            "validation-split", value: "F",
            help:
                "the last fraction F of rows is validation, kept out of all statistics (default 0)"
        ),
        OptionSpec(
            "shuffle-seed", value: "S",
            help:
                "shuffle the rows with this seed before the split (default: file order)"
        ),
        OptionSpec(
            "skip-empty-text",
            help: "drop rows whose text has no words (default: error)"),
        OptionSpec(
            "vocabulary", value: "FILE",
            help: "reuse this vocabulary.txt instead of building one"),
        OptionSpec(
            "overwrite", help: "replace an existing prepared folder at --out"),
    ]

    /// The options of `prepare`; nil when `--help` was asked for.
    static func parse(_ arguments: [String]) throws -> PrepareOptions? {
        let parsed = try ParsedArguments(arguments, options: specs)
        if parsed.wantsHelp { return nil }
        func required(_ name: String) throws -> String {
            guard let value = parsed.string(name), !value.isEmpty else {
                throw UsageError("prepare needs '--\(name)'")
            }
            return value
        }
        let thresholdText = try required("label-threshold")
        let threshold: LabelThreshold
        if thresholdText == "median" {
            threshold = .median
        } else if let value = parseDecimal(thresholdText) {
            threshold = .value(value)
        } else {
            throw UsageError(
                "option '--label-threshold' expects a number or 'median', "
                    + "got '\(thresholdText)'")
        }
        var options = PrepareOptions(
            csv: try required("csv"), out: try required("out"),
            textColumn: try required("text-column"),
            labelColumn: try required("label-column"),
            labelThreshold: threshold)
        options.labelThresholdText = thresholdText

        options.features.timeColumn = parsed.string("time-column")
        if parsed.string("time-format") != nil
            || parsed.string("timezone-offset") != nil,
            options.features.timeColumn == nil
        {
            throw UsageError(
                "options '--time-format' and '--timezone-offset' need '--time-column'"
            )
        }
        options.features.timeFormat = try TimeFormat.from(
            option: parsed.string("time-format"))
        options.features.timezoneOffsetHours = try parsed.double(
            "timezone-offset", default: 0,
            expected: "a number of hours in -24...24"
        ) { abs($0) <= PrepareRecord.maxTimezoneOffsetHours }
        options.features.linkVideoColumn = parsed.string("link-video-column")
        if let list = parsed.string("aux-columns") {
            let names = list.split(
                separator: ",", omittingEmptySubsequences: false
            )
            .map(String.init)
            if names.contains(where: \.isEmpty)
                || Set(names).count != names.count
            {
                throw UsageError(
                    "option '--aux-columns' expects distinct column names "
                        + "separated by commas, got '\(list)'")
            }
            options.features.auxColumns = names
        }

        options.dedupeColumn = parsed.string("dedupe-column")
        options.dedupeLatestColumn = parsed.string("dedupe-latest-column")
        if options.dedupeLatestColumn != nil, options.dedupeColumn == nil {
            throw UsageError(
                "option '--dedupe-latest-column' needs '--dedupe-column'")
        }
        options.vocabSize = try parsed.int(
            "vocab-size", default: 10_000, in: PrepareRecord.vocabSizeRange)
        options.sequenceLength = try parsed.int(
            "sequence-length", default: 100,
            in: PrepareRecord.sequenceLengthRange)
        options.validationSplit = try parsed.double(
            "validation-split", default: 0, expected: "a fraction in [0, 1)"
        ) { $0 >= 0 && $0 < 1 }
        if parsed.string("shuffle-seed") != nil {
            options.shuffleSeed = try parsed.int(
                "shuffle-seed", default: 0, in: 0...Int.max)
        }
        options.skipEmptyText = parsed.flag("skip-empty-text")
        options.vocabularyFile = parsed.string("vocabulary")
        options.overwrite = parsed.flag("overwrite")
        return options
    }
}
