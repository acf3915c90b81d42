import XCTest

@testable import Launcher

final class TimeParsingTests: XCTestCase {
    func testISOVariantsAgree() {
        // 2017-07-14 14:30:59 UTC = 1500042659 (a Friday).
        let expected: Int64 = 1_500_042_659
        for text in [
            "2017-07-14T14:30:59+0000", "2017-07-14T14:30:59Z",
            "2017-07-14T14:30:59+00:00",
            "2017-07-14T14:30:59", "2017-07-14 14:30:59",
            "2017-07-14T16:30:59+02:00",
            "2017-07-14T10:30:59-0400", "2017-07-14T14:30:59.75Z",
            " 2017-07-14T15:30:59+01 ",
        ] {
            XCTAssertEqual(
                TimeFormat.iso8601.parse(text)?.seconds, expected, text)
        }
        XCTAssertEqual(
            TimeFormat.iso8601.parse("2017-07-14T14:30:59.75Z")?.nanoseconds,
            750_000_000)
        XCTAssertEqual(
            TimeFormat.iso8601.parse("2017-07-14T14:30Z")?.seconds,
            expected - 59)
    }

    func testISORejects() {
        for text in [
            "", "2017-07-14", "2017-13-01T00:00:00", "2017-02-29T00:00:00",
            "2017-07-14T24:00:00",
            "2017-07-14T14:30:59+0000x", "14/07/2017 14:30",
            "2017-7-14T14:30:59",
        ] {
            XCTAssertNil(TimeFormat.iso8601.parse(text), text)
        }
        XCTAssertNotNil(TimeFormat.iso8601.parse("2016-02-29T00:00:00"))
    }

    func testDaysSinceEpoch() {
        XCTAssertEqual(daysSinceEpoch(year: 1970, month: 1, day: 1), 0)
        XCTAssertEqual(daysSinceEpoch(year: 2000, month: 3, day: 1), 11_017)
        XCTAssertEqual(daysSinceEpoch(year: 1969, month: 12, day: 31), -1)
        XCTAssertEqual(daysSinceEpoch(year: 2017, month: 7, day: 14), 17_361)
    }

    func testHourAndWeekdayWithOffset() {
        let t = TimeFormat.iso8601.parse("2017-07-14T14:30:59Z")!  // Friday
        XCTAssertTrue(hourAndWeekday(t, offsetSeconds: 0) == (14, 4))
        XCTAssertTrue(hourAndWeekday(t, offsetSeconds: -15 * 3600) == (23, 3))  // Thursday
        XCTAssertTrue(hourAndWeekday(t, offsetSeconds: 10 * 3600) == (0, 5))  // Saturday
        let old = TimeFormat.iso8601.parse("1969-12-31T23:00:00Z")!  // Wednesday
        XCTAssertTrue(hourAndWeekday(old, offsetSeconds: 0) == (23, 2))
    }

    func testCustomFormats() throws {
        let f = try TimeFormat.from(option: "%d/%m/%Y %H:%M")
        XCTAssertEqual(f.parse("14/07/2017 14:30")?.seconds, 1_500_042_600)
        XCTAssertEqual(
            f.parse("4/7/2017 9:05")?.seconds,
            TimeFormat.iso8601.parse("2017-07-04T09:05:00")?.seconds)
        XCTAssertNil(f.parse("2017-07-14T14:30:59"))
        XCTAssertNil(f.parse("31/02/2017 10:00"))

        let z = try TimeFormat.from(option: "%Y-%m-%d %H:%M:%S%z")
        XCTAssertEqual(
            z.parse("2017-07-14 16:30:59+0200")?.seconds, 1_500_042_659)
        XCTAssertEqual(
            z.parse("2017-07-14 16:30:59+02:00")?.seconds, 1_500_042_659)

        let named = try TimeFormat.from(option: "%a, %d %b %Y %I:%M %p")
        XCTAssertEqual(
            named.parse("Fri, 14 Jul 2017 02:30 PM")?.seconds, 1_500_042_600)
        XCTAssertEqual(
            named.parse("fri, 14 JULY 2017 12:30 am")?.seconds, 1_499_992_200)

        let fraction = try TimeFormat.from(option: "%F %T.%f")
        XCTAssertEqual(
            fraction.parse("2017-07-14 11:01:02.123456")?.nanoseconds,
            123_456_000)
    }

    func testBadFormatsAreUsageErrors() {
        XCTAssertThrowsError(try TimeFormat.from(option: "%Y-%m-%d"))  // no hour
        XCTAssertThrowsError(try TimeFormat.from(option: "%Y-%m-%d %H %Q"))
        XCTAssertThrowsError(try TimeFormat.from(option: "%Y-%m-%d %I:%M"))  // %I without %p
        XCTAssertThrowsError(try TimeFormat.from(option: "%Y-%m-%d %H%"))
    }
}
