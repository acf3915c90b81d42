import Foundation

/// Which auxiliary features an import computes, in their fixed order: the
/// four time features (hour_sin, hour_cos, dow_sin, dow_cos) when a time
/// column is given, then link_video when a link column is given, then the
/// numeric aux columns as they are named.
struct FeatureSpec {
    var timeColumn: String?
    var timeFormat: TimeFormat = .iso8601
    /// Added to the times before the hour and weekday are taken.
    var timezoneOffsetHours: Double = 0
    var linkVideoColumn: String?
    var auxColumns: [String] = []

    static let timeFeatureNames = [
        "hour_sin", "hour_cos", "dow_sin", "dow_cos",
    ]
    static let linkVideoFeatureName = "link_video"

    var names: [String] {
        (timeColumn == nil ? [] : Self.timeFeatureNames)
            + (linkVideoColumn == nil ? [] : [Self.linkVideoFeatureName])
            + auxColumns
    }

    var count: Int { names.count }

    /// Whether a URL is a facebook.com video: it contains both
    /// `facebook.com/` and `/videos/` (compared without regard to case).
    static func isFacebookVideo(_ url: String) -> Bool {
        let lower = url.lowercased()
        return lower.contains("facebook.com/") && lower.contains("/videos/")
    }

    /// The unscaled features of `rows` of `table`, row-major
    /// (`rows.count` x `count`). Throws naming the row for a time that
    /// does not parse or an aux value that is not a number.
    func rawFeatures(_ table: CSVTable, rows: [Int]) throws -> [Double] {
        let timeIndex = try timeColumn.map {
            try table.columnIndex($0, option: "time-column")
        }
        let linkIndex = try linkVideoColumn.map {
            try table.columnIndex($0, option: "link-video-column")
        }
        let auxIndices = try auxColumns.map {
            try table.columnIndex($0, option: "aux-columns")
        }
        let offset = Int64((timezoneOffsetHours * 3600).rounded())
        var result: [Double] = []
        result.reserveCapacity(rows.count * count)
        for row in rows {
            if let timeIndex {
                let text = table.field(row, timeIndex)
                guard let time = timeFormat.parse(text) else {
                    throw table.error(
                        row: row, column: timeIndex,
                        "expected \(timeFormat.expectation), got "
                            + quotedForMessage(text))
                }
                let (hour, weekday) = hourAndWeekday(
                    time, offsetSeconds: offset)
                let hourAngle = 2 * Double.pi * Double(hour) / 24
                let dayAngle = 2 * Double.pi * Double(weekday) / 7
                result += [
                    sin(hourAngle), cos(hourAngle), sin(dayAngle),
                    cos(dayAngle),
                ]
            }
            if let linkIndex {
                result.append(
                    Self.isFacebookVideo(table.field(row, linkIndex)) ? 1 : 0)
            }
            for index in auxIndices {
                let text = table.field(row, index)
                guard let value = parseDecimal(text) else {
                    throw table.error(
                        row: row, column: index,
                        "expected a finite number, got "
                            + quotedForMessage(text))
                }
                result.append(value)
            }
        }
        return result
    }
}

/// The standardisation of one feature: `(value - mean) / divisor`.
///
/// Every feature is standardised, the cyclic sin/cos ones included. They
/// are bounded already, but the posting hours of real data are far from
/// uniform, so their means are not 0 and their spreads differ; treating
/// all features alike keeps one rule with no exceptions, and an affine map
/// of each coordinate loses nothing the dense layers could use.
struct FeatureScaling: Codable, Equatable {
    var name: String
    var mean: Double
    /// Population standard deviation over the training rows.
    var std: Double
    /// `std`, or 1 when `std` is 0 (a constant feature becomes 0).
    var divisor: Double

    /// Statistics of each of the `names.count` columns of `raw` over its
    /// first `trainingRows` rows.
    static func fit(raw: [Double], names: [String], trainingRows: Int)
        -> [FeatureScaling]
    {
        let width = names.count
        return names.indices.map { column in
            guard trainingRows > 0 else {
                return FeatureScaling(
                    name: names[column], mean: 0, std: 0, divisor: 1)
            }
            var sum = 0.0
            var low = Double.infinity
            var high = -Double.infinity
            for row in 0..<trainingRows {
                let value = raw[row * width + column]
                sum += value
                low = min(low, value)
                high = max(high, value)
            }
            // A constant feature gets exactly its value and spread 0, which
            // rounding in the sums would not guarantee.
            if low == high {
                return FeatureScaling(
                    name: names[column], mean: low, std: 0, divisor: 1)
            }
            let mean = sum / Double(trainingRows)
            var squares = 0.0
            for row in 0..<trainingRows {
                let d = raw[row * width + column] - mean
                squares += d * d
            }
            let std = (squares / Double(trainingRows)).squareRoot()
            return FeatureScaling(
                name: names[column], mean: mean, std: std,
                divisor: std > 0 ? std : 1)
        }
    }

    /// `raw` (row-major, one column per scaling) standardised, as Float.
    static func apply(_ scalings: [FeatureScaling], to raw: [Double]) -> [Float]
    {
        let width = scalings.count
        guard width > 0 else { return [] }
        return raw.indices.map { i in
            let s = scalings[i % width]
            return Float((raw[i] - s.mean) / s.divisor)
        }
    }
}
